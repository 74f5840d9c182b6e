import { randomUUID } from "node:crypto";

/** A contact, with the fields of Xero's `Contacts` the fake keeps. */
export interface ContactJson {
  ContactID: string;
  ContactStatus: "ACTIVE" | "ARCHIVED";
  Name: string;
  EmailAddress: string;
  IsSupplier: boolean;
  IsCustomer: boolean;
  UpdatedDateUTC: string;
}

/** One line of an invoice. */
export interface LineItemJson {
  LineItemID: string;
  Description: string;
  Quantity: number;
  UnitAmount: number;
  AccountCode: string;
  TaxType: string;
  TaxAmount: number;
  LineAmount: number;
}

/** An invoice, with the fields of Xero's `Invoices` the fake keeps (amounts tax-exclusive, no tax). */
export interface InvoiceJson {
  Type: "ACCREC" | "ACCPAY";
  InvoiceID: string;
  InvoiceNumber: string;
  Reference: string;
  Contact: { ContactID: string; Name: string };
  Date: string;
  DueDate: string;
  Status: "DRAFT" | "SUBMITTED" | "AUTHORISED";
  LineAmountTypes: "Exclusive";
  LineItems: LineItemJson[];
  SubTotal: number;
  TotalTax: number;
  Total: number;
  AmountDue: number;
  AmountPaid: number;
  CurrencyCode: string;
  UpdatedDateUTC: string;
}

/** The organisation of a tenant, as `GET /Organisation` lists it. */
export interface OrganisationJson {
  OrganisationID: string;
  Name: string;
  LegalName: string;
  ShortCode: string;
  OrganisationType: "COMPANY" | "PRACTICE";
  OrganisationStatus: "ACTIVE";
  BaseCurrency: string;
  CountryCode: string;
  IsDemoCompany: boolean;
  Version: string;
  CreatedDateUTC: string;
}

/** One tenant's accounting data, in memory. */
export interface AccountingBook {
  readonly organisation: OrganisationJson;
  readonly contacts: ContactJson[];
  readonly invoices: InvoiceJson[];
}

/** A validation error, as Xero lists them under `Elements[].ValidationErrors`. */
export class ValidationFailure extends Error {
  constructor(readonly messages: string[]) {
    super(messages.join("; "));
  }
}

/** A book for a new tenant: its organisation, two contacts and one draft invoice. */
export function newAccountingBook(
  tenantId: string,
  tenantName: string,
  tenantType: "ORGANISATION" | "PRACTICE",
  at: number,
): AccountingBook {
  const country = /\((AU|NZ|UK|US)\)/.exec(tenantName)?.[1] ?? "NZ";
  const currency = { AU: "AUD", NZ: "NZD", UK: "GBP", US: "USD" }[country] ?? "NZD";
  const stamp = xeroDate(at);
  const contacts: ContactJson[] = [
    contact("Ridgeway University", "accounts@ridgeway.example", false, true, stamp),
    contact("PowerDirect", "billing@powerdirect.example", true, false, stamp),
  ];
  const book: AccountingBook = {
    organisation: {
      OrganisationID: tenantId,
      Name: tenantName,
      LegalName: tenantName,
      ShortCode: `!${tenantId.replace(/-/g, "").slice(0, 5)}`,
      OrganisationType: tenantType === "PRACTICE" ? "PRACTICE" : "COMPANY",
      OrganisationStatus: "ACTIVE",
      BaseCurrency: currency,
      CountryCode: country === "UK" ? "GB" : country,
      IsDemoCompany: tenantName.startsWith("Demo Company"),
      Version: country,
      CreatedDateUTC: stamp,
    },
    contacts,
    invoices: [],
  };
  createInvoice(
    book,
    {
      Type: "ACCREC",
      Contact: { ContactID: contacts[0]!.ContactID },
      LineItems: [{ Description: "Consulting", Quantity: 2, UnitAmount: 150 }],
    },
    at,
  );
  return book;
}

/**
 * Creates an invoice from a request element (Xero's fields; `Contact` by
 * `ContactID` or `Name`, a new name adds a contact) and returns it.
 * Throws {@link ValidationFailure} on what Xero would refuse.
 */
export function createInvoice(book: AccountingBook, input: unknown, at: number): InvoiceJson {
  const errors: string[] = [];
  const o = isObject(input) ? input : {};
  if (!isObject(input)) errors.push("An invoice must be an object");
  const type = o["Type"];
  if (type !== "ACCREC" && type !== "ACCPAY") errors.push("Invoice Type must be specified");
  const found = findContact(book, o["Contact"]);
  if (found === undefined) errors.push("A Contact must be specified for this type of transaction");
  const rawLines = o["LineItems"] ?? [];
  const lines: LineItemJson[] = [];
  if (!Array.isArray(rawLines)) errors.push("LineItems must be an array");
  else
    for (const raw of rawLines as unknown[]) {
      const l = isObject(raw) ? raw : {};
      const quantity = l["Quantity"] ?? 1;
      const unit = l["UnitAmount"] ?? 0;
      if (typeof quantity !== "number" || typeof unit !== "number" || !Number.isFinite(quantity) || !Number.isFinite(unit)) {
        errors.push("Quantity and UnitAmount must be numbers");
        continue;
      }
      const amount = round2(quantity * unit);
      lines.push({
        LineItemID: randomUUID(),
        Description: typeof l["Description"] === "string" ? l["Description"] : "",
        Quantity: quantity,
        UnitAmount: unit,
        AccountCode: typeof l["AccountCode"] === "string" ? l["AccountCode"] : "200",
        TaxType: "NONE",
        TaxAmount: 0,
        LineAmount: amount,
      });
    }
  const status = o["Status"] ?? "DRAFT";
  if (status !== "DRAFT" && status !== "SUBMITTED" && status !== "AUTHORISED") errors.push(`Invalid Status ${String(status)}`);
  if (errors.length > 0 || found === undefined) throw new ValidationFailure(errors);

  const contact_ = found === "new" ? addContact(book, String((o["Contact"] as Record<string, unknown>)["Name"]), at) : found;
  const total = round2(lines.reduce((sum, l) => sum + l.LineAmount, 0));
  const date = typeof o["Date"] === "string" ? o["Date"] : isoDay(at);
  const invoice: InvoiceJson = {
    Type: type as InvoiceJson["Type"],
    InvoiceID: randomUUID(),
    InvoiceNumber: `INV-${String(book.invoices.length + 1).padStart(4, "0")}`,
    Reference: typeof o["Reference"] === "string" ? o["Reference"] : "",
    Contact: { ContactID: contact_.ContactID, Name: contact_.Name },
    Date: date,
    DueDate: typeof o["DueDate"] === "string" ? o["DueDate"] : isoDay(at + 30 * 86_400_000),
    Status: status as InvoiceJson["Status"],
    LineAmountTypes: "Exclusive",
    LineItems: lines,
    SubTotal: total,
    TotalTax: 0,
    Total: total,
    AmountDue: total,
    AmountPaid: 0,
    CurrencyCode: book.organisation.BaseCurrency,
    UpdatedDateUTC: xeroDate(at),
  };
  book.invoices.push(invoice);
  return invoice;
}

/** The invoice with this `InvoiceID` (any case) or `InvoiceNumber`. */
export function findInvoice(book: AccountingBook, idOrNumber: string): InvoiceJson | undefined {
  const id = idOrNumber.toLowerCase();
  return book.invoices.find((i) => i.InvoiceID === id || i.InvoiceNumber === idOrNumber);
}

/** Xero's JSON date: `/Date(ms+0000)/`. */
export function xeroDate(ms: number): string {
  return `/Date(${ms}+0000)/`;
}

function findContact(book: AccountingBook, ref: unknown): ContactJson | "new" | undefined {
  if (!isObject(ref)) return undefined;
  const id = ref["ContactID"];
  if (typeof id === "string") return book.contacts.find((c) => c.ContactID === id.toLowerCase());
  const name = ref["Name"];
  if (typeof name !== "string" || name.trim() === "") return undefined;
  return book.contacts.find((c) => c.Name === name) ?? "new";
}

function addContact(book: AccountingBook, name: string, at: number): ContactJson {
  const added = contact(name, "", false, true, xeroDate(at));
  book.contacts.push(added);
  return added;
}

function contact(name: string, email: string, supplier: boolean, customer: boolean, stamp: string): ContactJson {
  return {
    ContactID: randomUUID(),
    ContactStatus: "ACTIVE",
    Name: name,
    EmailAddress: email,
    IsSupplier: supplier,
    IsCustomer: customer,
    UpdatedDateUTC: stamp,
  };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

function isoDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}
