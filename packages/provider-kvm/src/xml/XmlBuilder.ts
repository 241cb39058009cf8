/**
 * A small XML element tree and its serializer. Domain XML is built as data (elements,
 * attributes, text) and rendered in one place that escapes every attribute value and every
 * text node, so a user-given value (a label, a cmdline, a path) can never close a tag or
 * open a new one. Element and attribute names are ours, never the user's, and are checked.
 */
export type XmlAttrValue = string | number | boolean | undefined;
export type XmlChild = XmlElement | string | number | undefined | false | null;

export interface XmlElement {
  readonly name: string;
  readonly attrs: Readonly<Record<string, XmlAttrValue>>;
  readonly children: readonly XmlChild[];
}

const NAME = /^[A-Za-z_][A-Za-z0-9_.-]*(?::[A-Za-z_][A-Za-z0-9_.-]*)?$/;
// XML 1.0 forbids most control characters even escaped; refuse them instead of emitting
// a document libvirt would reject with a less helpful message.
// eslint-disable-next-line no-control-regex
const INVALID_CHARS = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/;

/** `el('disk', { type: 'volume' }, el('source', { pool }))`; undefined attributes and children are left out. */
export function el(name: string, attrs: Readonly<Record<string, XmlAttrValue>> = {}, ...children: readonly XmlChild[]): XmlElement {
  if (!NAME.test(name)) throw new TypeError(`not an XML element name: ${name}`);
  for (const key of Object.keys(attrs)) if (!NAME.test(key)) throw new TypeError(`not an XML attribute name: ${key}`);
  return { name, attrs, children };
}

export function escapeText(value: string): string {
  if (INVALID_CHARS.test(value)) throw new TypeError('text contains a character XML cannot carry');
  return value.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

export function escapeAttr(value: string): string {
  // Quotes, and the whitespace that attribute-value normalization would otherwise turn
  // into plain spaces, are written as character references.
  return escapeText(value).replaceAll('"', '&quot;').replaceAll("'", '&apos;').replaceAll('\n', '&#10;').replaceAll('\r', '&#13;').replaceAll('\t', '&#9;');
}

/** Renders with two-space indentation; elements holding only text stay on one line. */
export function renderXml(root: XmlElement): string {
  return `${render(root, '')}\n`;
}

function render(node: XmlElement, indent: string): string {
  const attrs = Object.entries(node.attrs)
    .filter((entry): entry is [string, string | number | boolean] => entry[1] !== undefined)
    .map(([k, v]) => ` ${k}="${escapeAttr(String(v))}"`)
    .join('');
  const children = node.children.filter((c): c is XmlElement | string | number => c !== undefined && c !== null && c !== false);
  if (children.length === 0) return `${indent}<${node.name}${attrs}/>`;
  if (children.every((c) => typeof c !== 'object')) {
    return `${indent}<${node.name}${attrs}>${children.map((c) => escapeText(String(c))).join('')}</${node.name}>`;
  }
  const inner = children.map((c) => (typeof c === 'object' ? render(c, `${indent}  `) : `${indent}  ${escapeText(String(c))}`));
  return `${indent}<${node.name}${attrs}>\n${inner.join('\n')}\n${indent}</${node.name}>`;
}
