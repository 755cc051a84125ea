// Where a reconnect goes (PROTOCOL §5): the `resume` path of the last `welcome`, with its
// `resume_token`, on the scheme and host of the first URL.

/**
 * The URL of a sticky reconnect: `base`'s scheme, host and query (less any old
 * `resume_token`), the `resume` path of the last `welcome`, and `resume_token`. Throws
 * when the path does not start with a single `/`: a `welcome` must not be able to send
 * the client (and its token) to another host.
 */
export function resumeUrl(base: string, resumePath: string, resumeToken: string): string {
  if (!resumePath.startsWith("/") || resumePath.startsWith("//")) {
    throw new Error("resume path must start with a single /");
  }
  const url = new URL(base);
  url.pathname = resumePath.split("?")[0] ?? resumePath;
  url.hash = "";
  const kept = url.search
    .replace(/^\?/, "")
    .split("&")
    .filter((pair) => pair !== "" && !pair.startsWith("resume_token="));
  kept.push(`resume_token=${encodeURIComponent(resumeToken)}`);
  url.search = `?${kept.join("&")}`;
  return url.toString();
}

/** The URL without its query, for events and logs (the query may carry a resume token). */
export function redactUrl(url: string): string {
  return url.split("?")[0] ?? url;
}
