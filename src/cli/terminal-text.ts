/**
 * Text for a terminal from names that came from elsewhere (Xero's organisation and user names): no escape
 * sequence or control character reaches the terminal, so a name cannot recolour the output, move the cursor,
 * set the window title or hide a line. Ordinary Unicode (accents, CJK, emoji) is kept.
 */

/**
 * Escape sequences, removed whole: CSI (`ESC [` or C1 `0x9B`, parameters, intermediates, final byte); string
 * commands (OSC, DCS, SOS, PM, APC, as `ESC ]`/`P`/`X`/`^`/`_` or their C1 forms) up to BEL or ST; any other
 * `ESC` with its intermediates and final byte.
 */
const SEQUENCES =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching ESC, BEL, ST and the C1 introducers is the point.
  /(?:\u001b\[|\u009b)[\u0030-\u003f]*[\u0020-\u002f]*[\u0040-\u007e]?|(?:\u001b[\]PX^_]|[\u0090\u0098\u009d\u009e\u009f])[^\u0007\u001b\u009c]*(?:\u0007|\u001b\\|\u009c)?|\u001b[\u0020-\u002f]*[\u0030-\u007e]?/g;
/** What is left of C0 (tab, newline and carriage return included), DEL and C1. */
const CONTROLS = /\p{Cc}/gu;

/** `text` without escape sequences and control characters (C0, DEL, C1): safe on one line of a terminal. */
export function terminalSafe(text: string): string {
  return text.replace(SEQUENCES, "").replace(CONTROLS, "");
}

/**
 * `JSON.stringify(value, null, indent)` (0: one line) that a terminal shows as it is: JSON already escapes C0 characters; DEL and
 * C1 are escaped too (`\u009b`), so the data stays exactly what Xero sent, and the terminal sees none of it.
 */
export function terminalJson(value: unknown, indent = 2): string {
  return JSON.stringify(value, null, indent).replace(/[\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
