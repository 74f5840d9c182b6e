/**
 * gRPC server reflection on the real server: `buf curl` (connect-go's
 * reflection client, standing in for grpcurl) lists and calls the services
 * with no `.proto` at hand, and a Connect client speaks both reflection
 * versions directly, checking that the descriptors returned are complete.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import * as v1 from "../gen/ts/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../gen/ts/grpc/reflection/v1alpha/reflection_pb.js";
import { startBroker, tempDir, type BrokerFixture } from "./helpers/broker-fixture.js";
import { docSnippet, shellCommands } from "./helpers/doc-snippets.js";

const run = promisify(execFile);
const BUF = join(process.cwd(), "node_modules/.bin/buf");

let f: BrokerFixture;
let cwd: ReturnType<typeof tempDir>;
beforeEach(async () => {
  f = await startBroker();
  cwd = tempDir();
});
afterEach(async () => {
  await f.close();
  cwd.cleanup();
});

/**
 * Runs `buf curl --protocol grpc --http2-prior-knowledge <args>` in an empty
 * directory (no buf.yaml, no .proto to find): the schema can only come from
 * reflection. Resolves with stdout and the exit status.
 */
async function bufCurl(...args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await run(BUF, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args], {
      cwd: cwd.path,
      timeout: 15_000,
      env: { ...process.env, BUF_CACHE_DIR: join(cwd.path, ".cache") },
    });
    return { stdout, stderr, code: 0 };
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; code?: number };
    return { stdout: err.stdout ?? "", stderr: err.stderr ?? "", code: typeof err.code === "number" ? err.code : -1 };
  }
}

describe("buf curl, with reflection only", () => {
  it("the commands of docs/observability.md run as written: services, methods, a token, health", async () => {
    const commands = shellCommands(docSnippet("docs/observability.md", "buf-curl"));
    expect(commands).toHaveLength(4);
    const outputs: string[] = [];
    for (const command of commands) {
      expect(command.startsWith("npx buf curl ")).toBe(true);
      const filled = command
        .replace("npx buf ", `${BUF} `)
        .replaceAll("http://127.0.0.1:50051", f.server.url)
        .replace("<tenant id>", f.tenantId);
      const { stdout } = await run("/bin/sh", ["-c", filled], {
        cwd: cwd.path,
        timeout: 15_000,
        env: { ...process.env, BUF_CACHE_DIR: join(cwd.path, ".cache") },
      });
      outputs.push(stdout);
    }
    const [services, methods, token, health] = outputs as [string, string, string, string];
    expect(services.split("\n")).toContain("tokenbroker.v1.TokenService");
    expect(methods.split("\n")).toEqual(expect.arrayContaining(["tokenbroker.v1.TokenService/GetToken", "grpc.health.v1.Health/Check"]));
    expect((JSON.parse(token) as { token: { connectionId: string } }).token.connectionId).toBe(f.connectionId);
    expect(JSON.parse(health)).toEqual({ status: "SERVING" });
  });

  it("--list-services lists the token service, health and both reflection services", async () => {
    const { stdout, code } = await bufCurl("--list-services", f.server.url);
    expect(code).toBe(0);
    expect(stdout.trim().split("\n").sort()).toEqual([
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
      "tokenbroker.v1.TokenService",
    ]);
  });

  it.each([
    { name: "v1, buf curl's default", flags: [] },
    { name: "v1alpha", flags: ["--reflect-protocol", "grpc-v1alpha"] },
  ])("--list-methods lists TokenService's three methods and Health's ($name)", async ({ flags }) => {
    const { stdout, stderr, code } = await bufCurl(...flags, "--list-methods", f.server.url);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const methods = stdout.trim().split("\n");
    expect(methods).toEqual(
      expect.arrayContaining([
        "tokenbroker.v1.TokenService/GetToken",
        "tokenbroker.v1.TokenService/ReportExpired",
        "tokenbroker.v1.TokenService/WatchToken",
        "grpc.health.v1.Health/Check",
        "grpc.health.v1.Health/Watch",
        "grpc.health.v1.Health/List",
      ]),
    );
  });

  it("calls GetToken with a JSON request and prints the token as JSON", async () => {
    const { stdout, code } = await bufCurl(
      "-d",
      JSON.stringify({ tenantId: f.tenantId }),
      `${f.server.url}/tokenbroker.v1.TokenService/GetToken`,
    );
    expect(code).toBe(0);
    const body = JSON.parse(stdout) as {
      token: { accessToken: string; tokenType: string; expiresAt: string; connectionId: string; tenantIds: string[]; version: string };
    };
    const stored = await f.store.tokens.getToken(f.connectionId);
    // Compared without printing: a failure message must not show a token.
    expect(body.token.accessToken === stored!.accessToken, "the stored access token").toBe(true);
    expect(body.token.tokenType).toBe("Bearer");
    expect(body.token.connectionId).toBe(f.connectionId);
    expect(body.token.tenantIds).toContain(f.tenantId);
    // google.protobuf.Timestamp resolved through reflection (timestamp.proto sent as a dependency).
    expect(Date.parse(body.token.expiresAt)).toBe(stored!.expiresAt);
    expect(body.token.version).toBe(String(stored!.version));
  });

  it("passes the service's error through: an unknown tenant is NotFound", async () => {
    const { stderr, code } = await bufCurl("-d", '{"tenantId":"no-such-tenant"}', `${f.server.url}/tokenbroker.v1.TokenService/GetToken`);
    expect(code).not.toBe(0);
    expect(stderr).toMatch(/not_found/);
  });
});

describe.each([
  { version: "v1", service: v1.ServerReflection },
  { version: "v1alpha", service: v1alpha.ServerReflection },
] as const)("reflection $version with a Connect client", ({ service }) => {
  /** Sends the requests on one stream (as grpcurl does) and collects the answers, in order. */
  async function ask(...requests: Array<v1.ServerReflectionRequest["messageRequest"]>) {
    // v1 and v1alpha requests have the same shape; the client for either accepts this init.
    const client = createClient(service as typeof v1.ServerReflection, createGrpcTransport({ baseUrl: f.server.url }));
    async function* input() {
      for (const messageRequest of requests) yield create(v1.ServerReflectionRequestSchema, { host: "h", messageRequest });
    }
    const out = [];
    for await (const response of client.serverReflectionInfo(input())) out.push(response);
    return out;
  }

  function files(response: { messageResponse: { case: string | undefined; value?: unknown } }): FileDescriptorProto[] {
    expect(response.messageResponse.case).toBe("fileDescriptorResponse");
    const value = response.messageResponse.value as { fileDescriptorProto: Uint8Array[] };
    return value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
  }

  it("lists the services", async () => {
    const [answer] = await ask({ case: "listServices", value: "" });
    expect(answer!.validHost).toBe("h");
    expect(answer!.messageResponse.case).toBe("listServicesResponse");
    const names = (answer!.messageResponse.value as v1.ListServiceResponse).service.map((s) => s.name);
    expect(names.sort()).toEqual([
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
      "tokenbroker.v1.TokenService",
    ]);
  });

  it("file_containing_symbol finds messages, services, methods, fields and enum values, with dependencies", async () => {
    const symbols = [
      "tokenbroker.v1.Token",
      "tokenbroker.v1.TokenService",
      "tokenbroker.v1.TokenService.WatchToken",
      "tokenbroker.v1.GetTokenRequest.min_valid_for",
      "tokenbroker.v1.ConnectionState",
      "tokenbroker.v1.CONNECTION_STATE_ACTIVE",
    ];
    const answers = await ask(...symbols.map((value) => ({ case: "fileContainingSymbol" as const, value })));
    expect(answers).toHaveLength(symbols.length);
    for (const answer of answers) {
      const protos = files(answer);
      expect(protos[0]!.name).toBe("tokenbroker/v1/token_service.proto");
      expect(protos.map((p) => p.name).sort()).toEqual([
        "google/protobuf/duration.proto",
        "google/protobuf/timestamp.proto",
        "tokenbroker/v1/token_service.proto",
      ]);
    }
    // The set is complete: a registry builds from it alone (imports resolved by name), and describes the service.
    const [requested, ...dependencies] = files(answers[0]!);
    const registry = createFileRegistry(requested!, (name) => dependencies.find((d) => d.name === name));
    const tokenService = registry.getService("tokenbroker.v1.TokenService");
    expect(tokenService?.methods.map((m) => `${m.name}(${m.input.typeName}) ${m.methodKind}`)).toEqual([
      "GetToken(tokenbroker.v1.GetTokenRequest) unary",
      "ReportExpired(tokenbroker.v1.ReportExpiredRequest) unary",
      "WatchToken(tokenbroker.v1.WatchTokenRequest) server_streaming",
    ]);
    expect(registry.getMessage("tokenbroker.v1.Token")?.field.expiresAt?.message?.typeName).toBe("google.protobuf.Timestamp");
  });

  it("file_by_filename returns the file and file_containing_symbol finds health and reflection", async () => {
    const [byName, health, reflection] = await ask(
      { case: "fileByFilename", value: "google/protobuf/timestamp.proto" },
      { case: "fileContainingSymbol", value: "grpc.health.v1.Health" },
      { case: "fileContainingSymbol", value: "grpc.reflection.v1alpha.ServerReflectionRequest" },
    );
    expect(files(byName!).map((p) => p.name)).toEqual(["google/protobuf/timestamp.proto"]);
    expect(files(health!).map((p) => p.name)).toEqual(["grpc/health/v1/health.proto"]);
    expect(files(reflection!).map((p) => p.name)).toEqual(["grpc/reflection/v1alpha/reflection.proto"]);
  });

  it("answers unknown symbols, files and extensions with NOT_FOUND and keeps the stream open", async () => {
    const answers = await ask(
      { case: "fileContainingSymbol", value: "tokenbroker.v1.NoSuchThing" },
      { case: "fileByFilename", value: "nope.proto" },
      {
        case: "fileContainingExtension",
        value: create(v1.ExtensionRequestSchema, { containingType: "tokenbroker.v1.Token", extensionNumber: 100 }),
      },
      { case: "allExtensionNumbersOfType", value: "tokenbroker.v1.Token" },
      { case: "listServices", value: "" },
    );
    expect(answers.map((a) => a.messageResponse.case)).toEqual([
      "errorResponse",
      "errorResponse",
      "errorResponse",
      "allExtensionNumbersResponse",
      "listServicesResponse",
    ]);
    for (const a of answers.slice(0, 3)) expect((a.messageResponse.value as v1.ErrorResponse).errorCode).toBe(Code.NotFound);
    expect((answers[0]!.messageResponse.value as v1.ErrorResponse).errorMessage).toMatch(/tokenbroker\.v1\.NoSuchThing/);
    const numbers = answers[3]!.messageResponse.value as v1.ExtensionNumberResponse;
    expect(numbers.baseTypeName).toBe("tokenbroker.v1.Token");
    expect(numbers.extensionNumber).toEqual([]);
  });
});
