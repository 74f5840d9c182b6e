import { create, toBinary, type DescFile, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import {
  ServerReflectionResponseSchema,
  type ServerReflectionRequest,
  type ServerReflectionResponse,
} from "../../gen/ts/grpc/reflection/v1/reflection_pb.js";
import { withDependencies, type DescriptorIndex } from "./descriptor-index.js";

type Answer = NonNullable<MessageInitShape<typeof ServerReflectionResponseSchema>["messageResponse"]>;

/**
 * Answers one `grpc.reflection.v1` request from the index. A lookup that
 * finds nothing is answered with an `error_response` (NOT_FOUND), as gRPC's
 * own implementations do, and the stream goes on.
 */
export function answerReflection(index: DescriptorIndex, request: ServerReflectionRequest): ServerReflectionResponse {
  return create(ServerReflectionResponseSchema, {
    validHost: request.host,
    originalRequest: request,
    messageResponse: answer(index, request.messageRequest),
  });
}

function answer(index: DescriptorIndex, request: ServerReflectionRequest["messageRequest"]): Answer {
  switch (request.case) {
    case "listServices":
      return {
        case: "listServicesResponse",
        value: { service: index.serviceNames.map((name) => ({ name })) },
      };
    case "fileByFilename": {
      const file = index.fileByName(request.value);
      return file ? files(file) : notFound(`file not found: ${request.value}`);
    }
    case "fileContainingSymbol": {
      const file = index.fileContainingSymbol(request.value);
      return file ? files(file) : notFound(`symbol not found: ${request.value}`);
    }
    case "fileContainingExtension": {
      const { containingType, extensionNumber } = request.value;
      const extension = index.extension(containingType, extensionNumber);
      return extension ? files(extension.file) : notFound(`extension not found: ${containingType} ${extensionNumber}`);
    }
    case "allExtensionNumbersOfType": {
      const numbers = index.extensionNumbers(request.value);
      if (!numbers) return notFound(`type not found: ${request.value}`);
      return {
        case: "allExtensionNumbersResponse",
        value: { baseTypeName: request.value, extensionNumber: numbers },
      };
    }
    case undefined:
      return error(Code.InvalidArgument, "the request names no lookup");
  }
}

/** The file and its transitive dependencies, as serialised FileDescriptorProtos. */
function files(file: DescFile): Answer {
  return {
    case: "fileDescriptorResponse",
    value: { fileDescriptorProto: withDependencies(file).map((f) => toBinary(FileDescriptorProtoSchema, f.proto)) },
  };
}

function notFound(message: string): Answer {
  return error(Code.NotFound, message.slice(0, 300));
}

function error(code: Code, message: string): Answer {
  return { case: "errorResponse", value: { errorCode: code, errorMessage: message } };
}
