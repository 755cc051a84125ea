/**
 * The URL of a sticky reconnect: `base`'s scheme, host and query (less any old
 * `resume_token`), the `resume` path of the last `welcome`, and `resume_token`. Throws
 * when the path does not start with a single `/`: a `welcome` must not be able to send
 * the client (and its token) to another host.
 */
export declare function resumeUrl(base: string, resumePath: string, resumeToken: string): string;
/** The URL without its query, for events and logs (the query may carry a resume token). */
export declare function redactUrl(url: string): string;
