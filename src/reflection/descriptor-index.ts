import type { DescExtension, DescFile, DescService } from "@bufbuild/protobuf";
import { nestedTypes } from "@bufbuild/protobuf/reflect";

/** What server reflection looks things up in: the served services and every file they need. */
export interface DescriptorIndex {
  /** Full names of the services served, e.g. `tokenbroker.v1.TokenService`, sorted. */
  readonly serviceNames: readonly string[];
  /** The file with this name (`tokenbroker/v1/token_service.proto`), or undefined. */
  fileByName(name: string): DescFile | undefined;
  /** The file declaring a fully-qualified symbol: service, method, message, enum, enum value, field, oneof or extension. */
  fileContainingSymbol(symbol: string): DescFile | undefined;
  /** The extension of `typeName` with field number `number`, or undefined. */
  extension(typeName: string, number: number): DescExtension | undefined;
  /** Field numbers of the known extensions of a message type; undefined when the type is unknown. */
  extensionNumbers(typeName: string): number[] | undefined;
}

/**
 * Indexes the descriptors protobuf-es embeds in generated code: the files of
 * the given services and, transitively, every file they import (e.g.
 * `google/protobuf/timestamp.proto`), by file name and by symbol.
 */
export function createDescriptorIndex(services: Iterable<DescService>): DescriptorIndex {
  const files = new Map<string, DescFile>();
  const symbols = new Map<string, DescFile>();
  const messages = new Set<string>();
  const extensions: DescExtension[] = [];
  const serviceNames = new Set<string>();

  const addFile = (file: DescFile): void => {
    if (files.has(file.proto.name)) return;
    files.set(file.proto.name, file);
    for (const type of nestedTypes(file)) {
      symbols.set(type.typeName, file);
      switch (type.kind) {
        case "service":
          for (const method of type.methods) symbols.set(`${type.typeName}.${method.name}`, file);
          break;
        case "message":
          messages.add(type.typeName);
          for (const field of type.fields) symbols.set(`${type.typeName}.${field.name}`, file);
          for (const oneof of type.oneofs) symbols.set(`${type.typeName}.${oneof.name}`, file);
          break;
        case "enum": {
          // Enum values are scoped beside their enum (C++ scoping), e.g. `tokenbroker.v1.CONNECTION_STATE_ACTIVE`.
          const scope = type.typeName.slice(0, Math.max(0, type.typeName.lastIndexOf(".")));
          for (const value of type.values) symbols.set(scope ? `${scope}.${value.name}` : value.name, file);
          break;
        }
        case "extension":
          extensions.push(type);
          break;
      }
    }
    for (const dependency of file.dependencies) addFile(dependency);
  };
  for (const service of services) {
    serviceNames.add(service.typeName);
    addFile(service.file);
  }

  return {
    serviceNames: [...serviceNames].sort(),
    fileByName: (name) => files.get(name),
    fileContainingSymbol: (symbol) => symbols.get(symbol.startsWith(".") ? symbol.slice(1) : symbol),
    extension: (typeName, number) => extensions.find((e) => e.extendee.typeName === typeName && e.number === number),
    extensionNumbers: (typeName) =>
      messages.has(typeName) ? extensions.filter((e) => e.extendee.typeName === typeName).map((e) => e.number) : undefined,
  };
}

/**
 * The file followed by everything it imports, transitively, each once:
 * what a reflection client needs to build the file without a `.proto` at hand.
 */
export function withDependencies(file: DescFile): DescFile[] {
  const out: DescFile[] = [];
  const seen = new Set<string>();
  const queue = [file];
  for (let next = queue.shift(); next; next = queue.shift()) {
    if (seen.has(next.proto.name)) continue;
    seen.add(next.proto.name);
    out.push(next);
    queue.push(...next.dependencies);
  }
  return out;
}
