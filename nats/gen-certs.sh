#!/bin/sh
# Makes the certificates that nats/*.conf and Switchyard's internal mTLS expect, into
# DIR (default ./certs). Nothing here is committed: run it once per environment, and
# keep the *-key.pem files secret (a Kubernetes Secret, a vault).
#
#   nats/gen-certs.sh [DIR]
#
# Two CAs, so that no NATS certificate can stand in for a gateway at a worker:
#   ca.pem          NATS: signs the servers' certificate and the services' client
#                   certificates; its subject (CN=switchyard-<role>) is the NATS user
#   handoff-ca.pem  gateway -> worker hand-offs: signs workers' listener certificates
#                   and gateways' client certificates
#
# Files (certificate, key):
#   server.pem server-key.pem    every NATS node (serverAuth and clientAuth: routes
#                                dial with it); names below
#   worker.pem gateway.pem backend.pem sys.pem (+ -key.pem)
#                                NATS client certificates, CN=switchyard-<role>
#   handoff-worker.pem           workers' [worker.tls] cert (serverAuth); names below
#   handoff-gateway.pem          gateways' [internal_tls] cert (clientAuth)
#
# Environment:
#   NATS_NAMES    names of the NATS servers, as clients and routes dial them
#                 (default: localhost, 127.0.0.1, n1-n3, and the Kubernetes service
#                 nats in namespace $NAMESPACE with its pods)
#   WORKER_NAMES  names gateways dial workers by (default: localhost, 127.0.0.1 and
#                 the pods of service workers in $NAMESPACE)
#   NAMESPACE     Kubernetes namespace (default switchyard)
#   DAYS          validity (default 825)
set -eu

dir=${1:-certs}
ns=${NAMESPACE:-switchyard}
days=${DAYS:-825}
nats_names=${NATS_NAMES:-"DNS:localhost,IP:127.0.0.1,DNS:n1,DNS:n2,DNS:n3,DNS:nats,DNS:nats.$ns,DNS:nats.$ns.svc,DNS:nats.$ns.svc.cluster.local,DNS:*.nats.$ns.svc,DNS:*.nats.$ns.svc.cluster.local"}
worker_names=${WORKER_NAMES:-"DNS:localhost,IP:127.0.0.1,DNS:*.workers.$ns.svc,DNS:*.workers.$ns.svc.cluster.local"}

command -v openssl >/dev/null || { echo "gen-certs.sh: openssl is needed" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"
umask 077
ext=$(mktemp)
trap 'rm -f "$ext"' EXIT

key() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

# ca NAME CN
ca() {
  key "$1-key.pem"
  openssl req -x509 -new -key "$1-key.pem" -subj "/CN=$2" -days "$days" -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$1.pem"
}

# leaf NAME CA CN EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]
leaf() {
  key "$1-key.pem"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$4"
    if [ -n "${5:-}" ]; then echo "subjectAltName=$5"; fi
  } >"$ext"
  openssl req -new -key "$1-key.pem" -subj "/CN=$3" |
    openssl x509 -req -CA "$2.pem" -CAkey "$2-key.pem" -set_serial "0x$(openssl rand -hex 16)" \
      -days "$days" -sha256 -extfile "$ext" -out "$1.pem" 2>/dev/null
}

ca ca "Switchyard NATS CA"
leaf server ca "switchyard-nats" serverAuth,clientAuth "$nats_names"
for role in worker gateway backend sys; do
  leaf "$role" ca "switchyard-$role" clientAuth
done

ca handoff-ca "Switchyard hand-off CA"
leaf handoff-worker handoff-ca "switchyard-worker" serverAuth "$worker_names"
leaf handoff-gateway handoff-ca "switchyard-gateway" clientAuth

chmod 644 ./*.pem
chmod 600 ./*-key.pem
rm -f ca-key.pem.srl handoff-ca-key.pem.srl
echo "certificates in $(pwd):"
ls -1 ./*.pem | sed 's|^\./|  |'
