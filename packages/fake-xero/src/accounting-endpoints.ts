import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createInvoice, findInvoice, ValidationFailure, xeroDate, type InvoiceJson } from "./accounting-data.js";
import { admitTenantCall, type AdmittedTenantCall } from "./api-gate.js";
import type { FakeXeroContext } from "./context.js";
import { readBody, sendJson, sendText } from "./http-util.js";

/** Where Xero's accounting API lives, relative to the API's origin. */
export const ACCOUNTING_PREFIX = "/api.xro/2.0/";

type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void>;

/**
 * The handlers for a path under {@link ACCOUNTING_PREFIX}, by method
 * (resource names match in any case, as at Xero); undefined for an unknown path:
 * `GET /Organisation`, `GET /Contacts`, `GET|POST|PUT /Invoices`, `GET /Invoices/{InvoiceID or InvoiceNumber}`.
 */
export function accountingRoute(ctx: FakeXeroContext, path: string): Partial<Record<string, Handler>> | undefined {
  if (!path.startsWith(ACCOUNTING_PREFIX)) return undefined;
  const [resource, id, ...rest] = path.slice(ACCOUNTING_PREFIX.length).split("/");
  if (rest.length > 0 || resource === undefined) return undefined;
  const gated =
    (answer: (call: AdmittedTenantCall, req: IncomingMessage, res: ServerResponse, url: URL) => void | Promise<void>): Handler =>
    async (req, res, url) => {
      const call = await admitTenantCall(ctx, req, res);
      if (call) await answer(call, req, res, url);
    };
  const name = resource.toLowerCase();
  if (id === undefined) {
    if (name === "organisation")
      return {
        GET: gated((call, _req, res) => sendJson(res, 200, envelope(ctx, "Organisations", [call.book.organisation]), call.headers)),
      };
    if (name === "contacts")
      return { GET: gated((call, _req, res) => sendJson(res, 200, envelope(ctx, "Contacts", call.book.contacts), call.headers)) };
    if (name === "invoices") {
      const create = gated((call, req, res) => createInvoices(ctx, call, req, res));
      return { GET: gated((call, _req, res, url) => listInvoices(ctx, call, res, url)), POST: create, PUT: create };
    }
    return undefined;
  }
  if (name === "invoices" && id !== "") {
    return {
      GET: gated((call, _req, res) => {
        const invoice = findInvoice(call.book, safeDecode(id));
        if (invoice) sendJson(res, 200, envelope(ctx, "Invoices", [invoice]), call.headers);
        else sendText(res, 404, "The resource you're looking for cannot be found", call.headers);
      }),
    };
  }
  return undefined;
}

/** `GET /Invoices[?IDs=a,b][&Statuses=DRAFT,AUTHORISED]`. */
function listInvoices(ctx: FakeXeroContext, call: AdmittedTenantCall, res: ServerResponse, url: URL): void {
  const ids = csv(url.searchParams.get("IDs"))?.map((s) => s.toLowerCase());
  const statuses = csv(url.searchParams.get("Statuses"));
  const invoices = call.book.invoices.filter((i) => (!ids || ids.includes(i.InvoiceID)) && (!statuses || statuses.includes(i.Status)));
  sendJson(res, 200, envelope(ctx, "Invoices", invoices), call.headers);
}

/** `POST|PUT /Invoices` with `{"Invoices":[...]}` or one invoice: all are created, or none (400 `ValidationException`). */
async function createInvoices(ctx: FakeXeroContext, call: AdmittedTenantCall, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const text = await readBody(req);
  if (text === undefined) return sendText(res, 413, "Request entity too large", call.headers);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return sendJson(
      res,
      400,
      { ErrorNumber: 14, Type: "PostDataInvalidException", Message: "Invalid JSON in the request body" },
      call.headers,
    );
  }
  const list = isObject(parsed) && Array.isArray(parsed["Invoices"]) ? (parsed["Invoices"] as unknown[]) : [parsed];
  const before = call.book.invoices.length;
  const created: InvoiceJson[] = [];
  for (const element of list) {
    try {
      created.push(createInvoice(call.book, element, ctx.api.now()));
    } catch (e) {
      if (!(e instanceof ValidationFailure)) throw e;
      call.book.invoices.splice(before);
      const fields = isObject(element) ? element : {};
      return sendJson(
        res,
        400,
        {
          ErrorNumber: 10,
          Type: "ValidationException",
          Message: "A validation exception occurred",
          Elements: [{ ...fields, ValidationErrors: e.messages.map((Message) => ({ Message })) }],
        },
        call.headers,
      );
    }
  }
  sendJson(res, 200, envelope(ctx, "Invoices", created), call.headers);
}

/** Xero's response envelope around a list named `name`. */
function envelope(ctx: FakeXeroContext, name: string, items: readonly unknown[]): Record<string, unknown> {
  return { Id: randomUUID(), Status: "OK", ProviderName: "tokenbroker fake Xero", DateTimeUTC: xeroDate(ctx.api.now()), [name]: items };
}

function csv(value: string | null): string[] | undefined {
  return value === null || value === "" ? undefined : value.split(",").map((s) => s.trim());
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
