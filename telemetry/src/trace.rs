//! W3C trace context across the hops of a message, and the switch that keeps the hot
//! path free of spans while tracing is off.
//!
//! The spans of the message path (`publish`, `store`, `fanout`) are created through
//! [`span`], which returns [`Span::none()`] unless [`enable`] was called (by the binary,
//! when it installs an OTLP exporter): with tracing off their cost is one relaxed atomic
//! load. Connection spans (`accept`, `session`) exist either way: they carry log fields.
//!
//! A message's trace context travels as a W3C `traceparent` string: in the identity a
//! gateway hands to a worker, and in the NATS headers of the stored message (RePublish
//! keeps them), so that every worker's `fanout` span joins the publisher's trace.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId as OtelTraceId, TraceState,
};
use opentelemetry::Context;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::TraceId;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns the message-path spans on (the binary does, with an exporter installed).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether traces are exported at all.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// `make()` when tracing is on, else a disabled span that costs nothing.
#[inline]
pub fn span(make: impl FnOnce() -> Span) -> Span {
    if enabled() {
        make()
    } else {
        Span::none()
    }
}

/// Parses a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`) into a remote context.
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let span_id = parts.next()?;
    let flags = parts.next()?;
    // Version 00 has exactly four parts; later versions may add some.
    if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    if trace_id.len() != 32 || span_id.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace_id = OtelTraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(span_id).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let context = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// The `traceparent` of a span context.
pub fn format_traceparent(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

/// Makes `span` (fresh, not yet entered) a child of the remote context in `traceparent`.
/// Nothing happens without a valid one, or when the span is disabled.
pub fn set_parent(span: &Span, traceparent: Option<&str>) {
    if span.is_none() {
        return;
    }
    if let Some(remote) = traceparent.and_then(parse_traceparent) {
        let _ = span.set_parent(Context::new().with_remote_span_context(remote));
    }
}

/// Starts a new trace at `span` (fresh, not yet entered), whatever span it sits in:
/// a message's trace is its own, not its connection's. The connection's trace is
/// linked instead.
pub fn new_trace(span: &Span, link_to: &Span) {
    if span.is_none() {
        return;
    }
    let _ = span.set_parent(Context::new());
    let linked = link_to.context().span().span_context().clone();
    if linked.is_valid() {
        span.add_link(linked);
    }
}

/// Links `span` to the remote context in `traceparent`, if valid.
pub fn link(span: &Span, traceparent: Option<&str>) {
    if span.is_none() {
        return;
    }
    if let Some(remote) = traceparent.and_then(parse_traceparent) {
        span.add_link(remote);
    }
}

/// The `traceparent` to hand on from `span`: `None` when it is disabled or unsampled
/// context is all there is.
pub fn traceparent(span: &Span) -> Option<String> {
    if span.is_none() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| format_traceparent(&span_context))
}

/// The trace id of `span` when it is sampled (an exemplar for the latency histogram).
pub fn sampled_trace_id(span: &Span) -> Option<TraceId> {
    if span.is_none() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    (span_context.is_valid() && span_context.is_sampled())
        .then(|| TraceId(span_context.trace_id().to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_round_trip() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let context = parse_traceparent(tp).unwrap();
        assert!(context.is_sampled() && context.is_remote());
        assert_eq!(format_traceparent(&context), tp);
        let unsampled =
            parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00");
        assert!(!unsampled.unwrap().is_sampled());
    }

    #[test]
    fn bad_traceparents_are_ignored() {
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
            "00-zzf7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn spans_are_none_while_tracing_is_off() {
        assert!(!enabled());
        let span = span(|| tracing::info_span!("x"));
        assert!(span.is_none());
        assert_eq!(traceparent(&span), None);
        assert_eq!(sampled_trace_id(&span), None);
    }
}
