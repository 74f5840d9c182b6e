/**
 * Request targets that ended the broker's process before issue 12 (a URL
 * parser read them as an authority, or could not read them at all): the
 * corpus of test/malformed-requests.test.ts and test/fuzz-http.test.ts.
 */
export const KILLER_TARGETS = ["//", "///", "//@", "//:1", "/\\", "http://a:b@/", "//a:b@c", "//%", "//[", "http://[/", "//x/..", "/\\x"];
