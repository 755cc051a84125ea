#!/usr/bin/env python3
"""Checks Envoy bootstrap files against Envoy's API, without an Envoy binary.

No Envoy can be installed here, so the check reads Envoy's API as xds-protos ships it
(Envoy's protos compiled for Python). For each file:

1. YAML with no duplicate key (a repeated key silently wins otherwise).
2. Every `@type` names a message of the API: its package's `_pb2` modules are imported
   so that the protobuf descriptor pool knows it, else the file fails naming the field.
3. The document parses into envoy.config.bootstrap.v3.Bootstrap with
   `json_format.ParseDict(..., ignore_unknown_fields=False)`, as Envoy loads YAML:
   a misspelled field anywhere, inside typed configs too, fails.
4. The protoc-gen-validate rules of the API, which Envoy enforces when it loads a
   config and ParseDict does not: required fields and oneofs, lengths, numeric and
   duration ranges, defined enums (a subset: no regexes of well-known kinds). No field
   or enum value the API marks deprecated.
5. What no schema says: every cluster named by a route, tcp_proxy or gRPC service is in
   static_resources.clusters; listener and cluster names are unique; the admin listener
   is on loopback; a health check's transport_socket_match_criteria matches one of its
   cluster's transport_socket_matches (Envoy silently falls back to the cluster's own
   socket otherwise); every HTTP filter chain ends with the router, every network
   filter chain with a terminal filter.

    check-envoy.py FILE...       check files; exit 1 naming each file and field at fault
    check-envoy.py --self-test   break shipped files on purpose; each break must be caught

scripts/check-envoy.sh makes the virtualenv this needs and runs both.
"""

import argparse
import copy
import difflib
import importlib
import importlib.util
import ipaddress
import re
import sys
from pathlib import Path

try:
    import yaml
    from google.protobuf import descriptor_pool, json_format, message_factory
    from google.protobuf.message import DecodeError

    from envoy.config.bootstrap.v3 import bootstrap_pb2
    from validate import validate_pb2
except ImportError as e:
    sys.exit(f"check-envoy.py: {e}: run scripts/check-envoy.sh, which makes the virtualenv this needs")

ROOT = Path(__file__).resolve().parent.parent
POOL = descriptor_pool.Default()

ROUTER = "envoy.extensions.filters.http.router.v3.Router"
TERMINAL_NETWORK_FILTERS = {
    "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
    "envoy.extensions.filters.network.direct_response.v3.Config",
}
# Where a config names a cluster: message type -> its fields holding a cluster name.
CLUSTER_REFERENCES = {
    "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy": ("cluster",),
    "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster.ClusterWeight": ("name",),
    "envoy.config.route.v3.RouteAction": ("cluster",),
    "envoy.config.route.v3.WeightedCluster.ClusterWeight": ("name",),
    "envoy.config.route.v3.RouteAction.RequestMirrorPolicy": ("cluster",),
    "envoy.config.core.v3.GrpcService.EnvoyGrpc": ("cluster_name",),
    "envoy.config.core.v3.HttpUri": ("cluster",),
}
NUMERIC_RULES = {
    "float", "double", "int32", "int64", "uint32", "uint64",
    "sint32", "sint64", "fixed32", "fixed64", "sfixed32", "sfixed64",
}


# ---- 1. YAML ---------------------------------------------------------------------------

class UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping."""


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ValueError(
                f"line {key_node.start_mark.line + 1}: key {key!r} given twice (first on line {seen[key] + 1})")
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping_plain(node, deep=deep)


UniqueKeyLoader.construct_mapping_plain = yaml.SafeLoader.construct_mapping
UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text):
    """The document of `text`, or raises ValueError with a one-line reason."""
    try:
        doc = yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise ValueError(" ".join(str(e).split())) from None
    if not isinstance(doc, dict):
        raise ValueError("the file is not a YAML mapping (an Envoy bootstrap)")
    return doc


# ---- 2. @type --------------------------------------------------------------------------

_imported_packages = set()


def _import_package(package):
    """Imports every `_pb2` module of a proto package; False if there is none."""
    if package in _imported_packages:
        return True
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    modules = sorted({p.stem for loc in spec.submodule_search_locations for p in Path(loc).glob("*_pb2.py")})
    for module in modules:
        importlib.import_module(f"{package}.{module}")
    _imported_packages.add(package)
    return bool(modules)


def message_descriptor(full_name):
    """The descriptor of a message of the API, importing its package; None if no such message."""
    try:
        return POOL.FindMessageTypeByName(full_name)
    except KeyError:
        pass
    parts = full_name.split(".")
    # A nested message (Outer.Inner) lives in Outer's package: try shorter prefixes too.
    for cut in range(len(parts) - 1, 0, -1):
        if _import_package(".".join(parts[:cut])):
            try:
                return POOL.FindMessageTypeByName(full_name)
            except KeyError:
                continue
    return None


def type_urls(node, path=""):
    """Every (path, @type value) of the document."""
    if isinstance(node, dict):
        if "@type" in node:
            yield path, node["@type"]
        for key, value in node.items():
            yield from type_urls(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from type_urls(value, f"{path}[{i}]")


def resolve_types(doc):
    """Problems with the document's `@type`s; on return the pool knows every good one."""
    problems = []
    for path, url in type_urls(doc):
        if not isinstance(url, str) or not url:
            problems.append(f"{path}.@type: {url!r} is not a type URL")
            continue
        name = url.rsplit("/", 1)[-1]
        if message_descriptor(name) is None:
            problems.append(f"{path}.@type: {url} names no message of the Envoy API (xds-protos)")
    return problems


# ---- 3. ParseDict ----------------------------------------------------------------------

def parse_problem(error):
    """A ParseError as `path: reason`, with a guess for a misspelled field."""
    text = str(error).split("\n Available Fields", 1)[0].strip()
    text = re.sub(r"^(Failed to parse \w+ field: )+", "", text)
    path = ""
    match = re.match(r'(?s)(.*) at "?Bootstrap(?:\.([^"]*?))?"?\.*$', text)
    if match:
        text, path = match.group(1), match.group(2) or ""
    unknown = re.search(r'Message type "([\w.]+)" has no field named "([^"]+)"', text)
    if unknown:
        found = message_descriptor(unknown.group(1))
        if found is not None:
            names = [f.name for f in found.fields]
            close = difflib.get_close_matches(unknown.group(2), names, n=1)
            if close:
                text += f" (did you mean {close[0]!r}?)"
        path = f"{path}.{unknown.group(2)}" if path else unknown.group(2)
    return f"{path or '(top level)'}: {text}"


def parse_bootstrap(doc):
    """(Bootstrap, []) or (None, [problem])."""
    bootstrap = bootstrap_pb2.Bootstrap()
    try:
        json_format.ParseDict(doc, bootstrap, ignore_unknown_fields=False)
    except (json_format.ParseError, DecodeError, TypeError, ValueError) as e:
        return None, [parse_problem(e)]
    return bootstrap, []


# ---- 4. and 5. the parsed config -------------------------------------------------------

def _join(path, name):
    return f"{path}.{name}" if path else name


def _repeated(fd):
    # protobuf 7 has is_repeated and no label; protobuf 5 the other way round.
    if hasattr(fd, "is_repeated"):
        return fd.is_repeated
    return fd.label == fd.LABEL_REPEATED


def _is_set(msg, fd):
    if _repeated(fd):
        return len(getattr(msg, fd.name)) > 0
    if fd.has_presence:
        return msg.HasField(fd.name)
    return getattr(msg, fd.name) != fd.default_value


def _show(value):
    if hasattr(value, "ToJsonString"):
        return value.ToJsonString()
    return repr(value)


def _nanos(duration):
    return duration.seconds * 1_000_000_000 + duration.nanos


class Walk:
    """Walks a parsed Bootstrap (unpacking every Any), checking rules as it goes."""

    def __init__(self):
        self.problems = []
        self.cluster_refs = []  # (path, cluster name)

    def bad(self, path, text):
        self.problems.append(f"{path}: {text}")

    # -- messages --

    def message(self, msg, path):
        desc = msg.DESCRIPTOR
        if desc.full_name == "google.protobuf.Any":
            inner_desc = message_descriptor(msg.type_url.rsplit("/", 1)[-1])
            if inner_desc is None:  # ParseDict would have failed first
                self.bad(path, f"cannot unpack {msg.type_url}")
                return
            inner = message_factory.GetMessageClass(inner_desc)()
            msg.Unpack(inner)
            self.message(inner, path)
            return
        options = desc.GetOptions()
        rules_on = not (options.Extensions[validate_pb2.disabled] or options.Extensions[validate_pb2.ignored])
        if rules_on:
            for oneof in desc.oneofs:
                if oneof.GetOptions().Extensions[validate_pb2.required] and msg.WhichOneof(oneof.name) is None:
                    names = ", ".join(f.name for f in oneof.fields)
                    self.bad(_join(path, oneof.name), f"one of {names} is required")
        for fd in desc.fields:
            fpath = _join(path, fd.name)
            present = _is_set(msg, fd)
            value = getattr(msg, fd.name)
            if present and fd.GetOptions().deprecated:
                self.bad(fpath, "is deprecated in this Envoy API: use its replacement")
            if present and fd.enum_type is not None:
                self._deprecated_enum(fd, value, fpath)
            field_opts = fd.GetOptions()
            rules = field_opts.Extensions[validate_pb2.rules] if field_opts.HasExtension(validate_pb2.rules) else None
            # A member of a oneof (or a proto3 `optional`) is checked only when it is the one set.
            chosen = fd.containing_oneof is None or msg.WhichOneof(fd.containing_oneof.name) == fd.name
            if rules is not None and rules_on and chosen:
                self.rules(fd, value, present, rules, fpath)
            if fd.message_type is None or not present:
                continue
            if rules is not None and rules.HasField("message") and rules.message.skip:
                continue
            if fd.message_type.GetOptions().map_entry:
                value_fd = fd.message_type.fields_by_name["value"]
                if value_fd.message_type is not None:
                    for key, item in value.items():
                        self.message(item, f"{fpath}[{key}]")
            elif _repeated(fd):
                for i, item in enumerate(value):
                    self.message(item, f"{fpath}[{i}]")
            else:
                self.message(value, fpath)
        self.project_rules(msg, path)

    def _deprecated_enum(self, fd, value, path):
        values = value if _repeated(fd) else [value]
        for number in values:
            found = fd.enum_type.values_by_number.get(number)
            if found is not None and found.GetOptions().deprecated:
                self.bad(path, f"{found.name} is deprecated in this Envoy API")

    # -- protoc-gen-validate --

    def rules(self, fd, value, present, rules, path):
        kind = rules.WhichOneof("type")
        if kind is None:
            return
        r = getattr(rules, kind)
        if kind == "repeated":
            self._repeated(fd, value, r, path)
        elif kind == "map":
            self._sized(value, r, path, "map", "min_pairs", "max_pairs")
        else:
            self.value(fd, kind, r, value, present, path)

    def _sized(self, value, r, path, kind, low, high):
        if getattr(r, "ignore_empty", False) and len(value) == 0:
            return
        if r.HasField(low) and len(value) < getattr(r, low):
            self.bad(path, f"has {len(value)} entries, breaks {kind}.{low} = {getattr(r, low)}")
        if r.HasField(high) and len(value) > getattr(r, high):
            self.bad(path, f"has {len(value)} entries, breaks {kind}.{high} = {getattr(r, high)}")

    def _repeated(self, fd, value, r, path):
        self._sized(value, r, path, "repeated", "min_items", "max_items")
        if r.HasField("items"):
            kind = r.items.WhichOneof("type")
            if kind is not None:
                for i, item in enumerate(value):
                    self.value(fd, kind, getattr(r.items, kind), item, True, f"{path}[{i}]")

    def value(self, fd, kind, r, value, present, path):
        def breaks(rule, limit):
            self.bad(path, f"{_show(value)} breaks validate rule {kind}.{rule} = {limit}")

        if kind in ("message", "any", "duration", "timestamp"):
            if getattr(r, "required", False) and not present:
                self.bad(path, f"is required (validate rule {kind}.required)")
                return
            if kind == "any" and present:
                if getattr(r, "in") and value.type_url not in getattr(r, "in"):
                    breaks("in", list(getattr(r, "in")))
            if kind == "duration" and present:
                self._range(_nanos(value), r, breaks, _nanos)
            return
        if kind in NUMERIC_RULES:
            if fd.message_type is not None:  # a wrapper such as UInt32Value: rules apply when set
                if not present:
                    return
                value = value.value
            if getattr(r, "ignore_empty", False) and value == 0:
                return
            self._range(value, r, breaks, lambda v: v)
            return
        if kind == "enum":
            if r.defined_only and value not in fd.enum_type.values_by_number:
                breaks("defined_only", True)
            if r.HasField("const") and value != r.const:
                breaks("const", r.const)
            if getattr(r, "in") and value not in getattr(r, "in"):
                breaks("in", list(getattr(r, "in")))
            if r.not_in and value in r.not_in:
                breaks("not_in", list(r.not_in))
            return
        if kind == "bool":
            if r.HasField("const") and value != r.const:
                breaks("const", r.const)
            return
        if kind in ("string", "bytes"):
            if getattr(r, "ignore_empty", False) and len(value) == 0:
                return
            size = len(value.encode() if kind == "string" else value)
            count = len(value)
            for rule, measured, ok in (
                ("min_len", count, lambda n, lim: n >= lim),
                ("max_len", count, lambda n, lim: n <= lim),
                ("len", count, lambda n, lim: n == lim),
                ("min_bytes", size, lambda n, lim: n >= lim),
                ("max_bytes", size, lambda n, lim: n <= lim),
            ):
                if rule in r.DESCRIPTOR.fields_by_name and r.HasField(rule) and not ok(measured, getattr(r, rule)):
                    breaks(rule, getattr(r, rule))
            if r.HasField("prefix") and not value.startswith(r.prefix):
                breaks("prefix", repr(r.prefix))
            if r.HasField("const") and value != r.const:
                breaks("const", repr(r.const))
            if getattr(r, "in") and value not in getattr(r, "in"):
                breaks("in", list(getattr(r, "in")))
            if r.not_in and value in r.not_in:
                breaks("not_in", list(r.not_in))
            if kind == "string" and r.HasField("pattern"):
                try:
                    if re.search(r.pattern, value) is None:
                        breaks("pattern", repr(r.pattern))
                except re.error:
                    pass  # an RE2 pattern Python cannot read: Envoy checks it
            return

    def _range(self, value, r, breaks, measure):
        """PGV's const/lt/lte/gt/gte/in/not_in; lt below gt means 'outside the range'."""
        fields = r.DESCRIPTOR.fields_by_name
        has = lambda name: name in fields and r.HasField(name)  # noqa: E731
        if has("const") and value != measure(r.const):
            breaks("const", _show(r.const))
        if "in" in fields and len(getattr(r, "in")) and value not in [measure(v) for v in getattr(r, "in")]:
            breaks("in", [_show(v) for v in getattr(r, "in")])
        if "not_in" in fields and value in [measure(v) for v in r.not_in]:
            breaks("not_in", [_show(v) for v in r.not_in])
        low = high = None
        if has("gt"):
            low = ("gt", measure(r.gt), value > measure(r.gt), r.gt)
        elif has("gte"):
            low = ("gte", measure(r.gte), value >= measure(r.gte), r.gte)
        if has("lt"):
            high = ("lt", measure(r.lt), value < measure(r.lt), r.lt)
        elif has("lte"):
            high = ("lte", measure(r.lte), value <= measure(r.lte), r.lte)
        if low and high and high[1] < low[1]:
            if not (low[2] or high[2]):
                breaks(f"{low[0]}/{high[0]}", f"outside {_show(high[3])}..{_show(low[3])}")
            return
        for bound in (low, high):
            if bound and not bound[2]:
                breaks(bound[0], _show(bound[3]))

    # -- what no schema says --

    def project_rules(self, msg, path):
        name = msg.DESCRIPTOR.full_name
        for field in CLUSTER_REFERENCES.get(name, ()):
            cluster = getattr(msg, field)
            if cluster:
                self.cluster_refs.append((_join(path, field), cluster))
        if name == "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager":
            filters = msg.http_filters
            last = filters[-1].typed_config.type_url.rsplit("/", 1)[-1] if filters else None
            if last != ROUTER:
                self.bad(_join(path, "http_filters"), f"must end with the router ({ROUTER}), ends with {last}")
        if name == "envoy.config.listener.v3.FilterChain" and msg.filters:
            last = msg.filters[-1].typed_config.type_url.rsplit("/", 1)[-1]
            if last not in TERMINAL_NETWORK_FILTERS:
                self.bad(_join(path, "filters"), f"must end with a terminal filter (tcp_proxy, http_connection_manager), ends with {last}")


def _struct_items(struct):
    return {key: json_format.MessageToDict(value) for key, value in struct.fields.items()}


def whole_config_rules(bootstrap, walk):
    """Checks across the whole Bootstrap: names, references, admin, health-check sockets."""
    problems = []
    resources = bootstrap.static_resources
    for kind, items in (("listener", resources.listeners), ("cluster", resources.clusters)):
        first = {}
        for i, item in enumerate(items):
            if item.name in first:
                problems.append(
                    f"static_resources.{kind}s[{i}].name: {kind} name {item.name!r} is already used by "
                    f"static_resources.{kind}s[{first[item.name]}]")
            first.setdefault(item.name, i)
    clusters = {c.name for c in resources.clusters}
    dynamic_clusters = bootstrap.dynamic_resources.HasField("cds_config")
    for path, name in walk.cluster_refs:
        if name not in clusters and not dynamic_clusters:
            known = ", ".join(sorted(clusters)) or "none"
            problems.append(f"{path}: cluster {name!r} is not in static_resources.clusters (has: {known})")
    if bootstrap.HasField("admin") and bootstrap.admin.HasField("address"):
        address = bootstrap.admin.address
        if address.HasField("socket_address"):
            host = address.socket_address.address
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                problems.append(
                    f"admin.address.socket_address.address: {host!r} is not loopback; the admin API "
                    "can drain and reconfigure Envoy, so bind it to 127.0.0.1 or ::1")
    for i, cluster in enumerate(resources.clusters):
        matches = [_struct_items(m.match) for m in cluster.transport_socket_matches]
        for j, check in enumerate(cluster.health_checks):
            if not check.HasField("transport_socket_match_criteria"):
                continue
            criteria = _struct_items(check.transport_socket_match_criteria)
            if not any(all(m.get(k) == v for k, v in criteria.items()) for m in matches):
                problems.append(
                    f"static_resources.clusters[{i}].health_checks[{j}].transport_socket_match_criteria: "
                    f"{criteria} matches none of the cluster's transport_socket_matches; Envoy would "
                    "silently health-check over the cluster's own transport socket")
    return problems


def check_doc(doc):
    """Every problem of a loaded document, as `path: reason` lines (empty when it is good)."""
    problems = resolve_types(doc)
    if problems:
        return problems
    bootstrap, problems = parse_bootstrap(doc)
    if bootstrap is None:
        return problems
    walk = Walk()
    walk.message(bootstrap, "")
    return walk.problems + whole_config_rules(bootstrap, walk)


def check_file(path):
    try:
        doc = load_yaml(Path(path).read_text())
    except (OSError, ValueError) as e:
        return [str(e)]
    return check_doc(doc)


# ---- self-test -------------------------------------------------------------------------

def _typed_configs(node, suffix):
    """Every mapping whose @type ends with `suffix`."""
    if isinstance(node, dict):
        if str(node.get("@type", "")).endswith(suffix):
            yield node
        for value in node.values():
            yield from _typed_configs(value, suffix)
    elif isinstance(node, list):
        for value in node:
            yield from _typed_configs(value, suffix)


def _first(doc, suffix):
    found = next(_typed_configs(doc, suffix), None)
    if found is None:
        raise LookupError(f"self-test: no typed config of type *{suffix} in the shipped file")
    return found


def _routes(doc):
    hcm = _first(doc, ".HttpConnectionManager")
    return [r for vh in hcm["route_config"]["virtual_hosts"] for r in vh["routes"] if "route" in r]


def _rename(mapping, old, new):
    mapping[new] = mapping.pop(old)


def _cluster(doc):
    return doc["static_resources"]["clusters"][0]


PASSTHROUGH = ROOT / "envoy" / "passthrough.yaml"
TERMINATING = ROOT / "envoy" / "terminating.yaml"

# (what is broken, shipped file, how, a word the problem must name)
BREAKS = [
    ("misspelled field in the tcp_proxy typed config", PASSTHROUGH,
     lambda d: _rename(_first(d, ".TcpProxy"), "stat_prefix", "stat_prefx"), "stat_prefx"),
    ("unknown field in the HttpConnectionManager", TERMINATING,
     lambda d: _first(d, ".HttpConnectionManager").update(websocket_timeout="0s"), "websocket_timeout"),
    ("misspelled field in the HttpConnectionManager", TERMINATING,
     lambda d: _rename(_first(d, ".HttpConnectionManager"), "upgrade_configs", "upgrade_config"), "upgrade_config"),
    ("@type naming no message", PASSTHROUGH,
     lambda d: _first(d, ".TcpProxy").update({"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxie"}),
     "TcpProxie"),
    ("@type in a package that does not exist", TERMINATING,
     lambda d: _first(d, ".UpstreamTlsContext").update({"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v9.UpstreamTlsContext"}),
     "tls.v9"),
    ("tcp_proxy to a cluster that does not exist", PASSTHROUGH,
     lambda d: _first(d, ".TcpProxy").update(cluster="switchyard_gatway"), "switchyard_gatway"),
    ("route to a cluster that does not exist", TERMINATING,
     lambda d: _routes(d)[0]["route"].update(cluster="switchyard_gatway"), "switchyard_gatway"),
    ("admin on every interface", PASSTHROUGH,
     lambda d: d["admin"]["address"]["socket_address"].update(address="0.0.0.0"), "admin.address"),
    ("two listeners with one name", TERMINATING,
     lambda d: d["static_resources"]["listeners"][1].update(name=d["static_resources"]["listeners"][0]["name"]),
     "already used"),
    ("empty stat_prefix (validate rule string.min_len)", PASSTHROUGH,
     lambda d: _first(d, ".TcpProxy").pop("stat_prefix"), "stat_prefix"),
    ("tcp_proxy without a cluster (required oneof)", PASSTHROUGH,
     lambda d: _first(d, ".TcpProxy").pop("cluster"), "cluster_specifier"),
    ("health check timeout of 0s (validate rule duration.gt)", TERMINATING,
     lambda d: _cluster(d)["health_checks"][0].update(timeout="0s"), "timeout"),
    ("port out of range (validate rule uint32.lte)", PASSTHROUGH,
     lambda d: d["static_resources"]["listeners"][0]["address"]["socket_address"].update(port_value=70000),
     "port_value"),
    ("value of the wrong type", TERMINATING,
     lambda d: _cluster(d).update(connect_timeout="two seconds"), "connect_timeout"),
    ("deprecated field", PASSTHROUGH,
     lambda d: d["admin"].update(access_log_path="/dev/stdout"), "deprecated"),
    ("health-check socket criteria matching no socket", PASSTHROUGH,
     lambda d: _cluster(d)["health_checks"][0]["transport_socket_match_criteria"].update(tls="nope"),
     "transport_socket_match_criteria"),
    ("HTTP filters not ending with the router", TERMINATING,
     lambda d: _first(d, ".HttpConnectionManager")["http_filters"].append({
         "name": "envoy.filters.http.health_check",
         "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck",
                          "pass_through_mode": False}}),
     "router"),
]


def self_test():
    passed = failed = 0

    def report(ok, name, detail):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")

    shipped = {}
    for path in (PASSTHROUGH, TERMINATING):
        shipped[path] = load_yaml(path.read_text())
        problems = check_doc(copy.deepcopy(shipped[path]))
        report(not problems, f"{path.name} as shipped passes", "; ".join(problems) or "no problem")
    for name, path, mutate, word in BREAKS:
        doc = copy.deepcopy(shipped[path])
        mutate(doc)
        problems = check_doc(doc)
        hit = next((p for p in problems if word in p), None)
        report(hit is not None, f"{name} is refused",
               hit or f"expected a problem naming {word!r}, got: {'; '.join(problems) or 'none'}")
    try:
        load_yaml("admin: {}\nadmin: {}\n")
        report(False, "a key given twice is refused", "it loaded")
    except ValueError as e:
        report("twice" in str(e), "a key given twice is refused", str(e))
    print(f"self-test: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="Envoy bootstrap YAML files")
    parser.add_argument("--self-test", action="store_true",
                        help="break the shipped files on purpose and expect every break caught")
    args = parser.parse_args()
    if args.self_test:
        return self_test()
    if not args.files:
        parser.error("name at least one file, or --self-test")
    bad = 0
    for path in args.files:
        shown = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
        problems = check_file(path)
        for problem in problems:
            print(f"{shown}: {problem}", file=sys.stderr)
        if problems:
            bad += 1
        else:
            print(f"{shown}: ok")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
