//! Where a reconnect goes (PROTOCOL §5): the `resume` path of the last `welcome`, with
//! its `resume_token`.

use crate::connection::{append_query, ConnectError, Target};

/// The URL of a reconnect: the first URL's scheme, host and query (less any old
/// `resume_token`), the `resume` path of the last `welcome`, and `resume_token`.
pub(crate) fn resume_url(
    base: &str,
    resume_path: &str,
    resume_token: &str,
) -> Result<String, ConnectError> {
    let target = Target::parse(base)?;
    if !resume_path.starts_with('/') {
        return Err(ConnectError::BadUrl("resume path must start with /".into()));
    }
    let path = resume_path.split('?').next().unwrap_or(resume_path);
    let query = target.path_and_query.split_once('?').map_or("", |(_, q)| q);
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.starts_with("resume_token="))
        .collect();
    let mut path_and_query = path.to_string();
    if !kept.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(&kept.join("&"));
    }
    let scheme = if target.tls { "wss" } else { "ws" };
    Ok(format!(
        "{scheme}://{}{}",
        target.authority,
        append_query(&path_and_query, "resume_token", resume_token)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_url_keeps_scheme_host_and_query() {
        assert_eq!(
            resume_url("wss://localhost:8443/ws", "/ws/w1/c_9f", "r+t").unwrap(),
            "wss://localhost:8443/ws/w1/c_9f?resume_token=r%2Bt"
        );
        assert_eq!(
            resume_url(
                "ws://127.0.0.1:1/ws?x=1&resume_token=old",
                "/ws/w2/c2",
                "new"
            )
            .unwrap(),
            "ws://127.0.0.1:1/ws/w2/c2?x=1&resume_token=new"
        );
        assert!(resume_url("ws://h/ws", "evil.example/ws", "t").is_err());
    }
}
