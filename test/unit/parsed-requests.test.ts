/**
 * The gRPC fast path's request parser: the same bytes are parsed once and
 * shared, frozen; other bytes, malformed bytes and large messages are parsed
 * as `fromBinary` parses them.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { GetTokenRequestSchema } from "../../gen/ts/tokenbroker/v1/token_service_pb.js";
import { createRequestParser } from "../../src/server/parsed-requests.js";

/** A gRPC envelope's header (5 bytes) and the request's binary form after it, as the fast path reads a body. */
function body(tenantId: string): Buffer {
  const message = toBinary(GetTokenRequestSchema, create(GetTokenRequestSchema, { selector: { case: "tenantId", value: tenantId } }));
  return Buffer.concat([Buffer.alloc(5), message]);
}

describe("request parser", () => {
  it("parses each request from its bytes; the same bytes again give the same frozen message", () => {
    const parse = createRequestParser(GetTokenRequestSchema);
    const a = parse(body("tenant-a"), 5);
    const b = parse(body("tenant-b"), 5);
    expect(a.selector).toEqual({ case: "tenantId", value: "tenant-a" });
    expect(b.selector).toEqual({ case: "tenantId", value: "tenant-b" });
    expect(parse(body("tenant-a"), 5)).toBe(a);
    expect(Object.isFrozen(a) && Object.isFrozen(a.selector)).toBe(true);
    expect(() => {
      (a.selector as { value: string }).value = "tenant-b";
    }).toThrow(TypeError); // a method that changed a shared request would change it for every caller
  });

  it("keeps at most maxEntries messages, none larger than maxBytes, and never bytes that do not parse", () => {
    const parse = createRequestParser(GetTokenRequestSchema, { maxEntries: 2, maxBytes: 20 });
    const a = parse(body("a"), 5);
    parse(body("b"), 5);
    parse(body("c"), 5); // full: starts again
    expect(parse(body("a"), 5)).not.toBe(a);
    expect(parse(body("a"), 5)).toBe(parse(body("a"), 5));
    const long = body("x".repeat(30));
    expect(parse(long, 5)).not.toBe(parse(long, 5));
    expect(parse(long, 5).selector).toEqual({ case: "tenantId", value: "x".repeat(30) });
    const broken = Buffer.from([0, 0, 0, 0, 0, 0x0a, 0x10, 0x61]); // field 1, 16 bytes long, 1 byte there
    expect(() => parse(broken, 5)).toThrow();
    expect(() => parse(broken, 5)).toThrow();
  });
});
