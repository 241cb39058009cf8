import { XMLParser } from 'fast-xml-parser';

/**
 * A parsed XML element: attributes without prefix, children by name (always arrays, so
 * one disk and three disks read alike), text in `#text`. Reading code navigates with the
 * helpers below and never indexes into raw parser output.
 */
export interface XmlNode {
  readonly attrs: Readonly<Record<string, string>>;
  readonly text: string;
  readonly children: ReadonlyMap<string, readonly XmlNode[]>;
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '',
  preserveOrder: true,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  processEntities: true,
  // Also decodes numeric character references (&#10;), which libvirt writes in attributes.
  htmlEntities: true,
});

type Ordered = Record<string, unknown>;

/** Parses a document and returns its root element, or throws on malformed XML. */
export function parseXml(xml: string): { name: string; node: XmlNode } {
  const doc = parser.parse(xml) as Ordered[];
  const root = doc.find((entry) => Object.keys(entry).some((k) => k !== ':@' && !k.startsWith('?')));
  if (!root) throw new Error('empty XML document');
  const name = Object.keys(root).find((k) => k !== ':@' && !k.startsWith('?'))!;
  return { name, node: toNode(root, name) };
}

function toNode(entry: Ordered, name: string): XmlNode {
  const attrs = (entry[':@'] as Record<string, string> | undefined) ?? {};
  const children = new Map<string, XmlNode[]>();
  let text = '';
  for (const child of (entry[name] as Ordered[] | undefined) ?? []) {
    if ('#text' in child) {
      text += String(child['#text']);
      continue;
    }
    const childName = Object.keys(child).find((k) => k !== ':@');
    if (!childName) continue;
    const list = children.get(childName) ?? [];
    list.push(toNode(child, childName));
    children.set(childName, list);
  }
  return { attrs, text, children };
}

export function child(node: XmlNode | undefined, ...path: string[]): XmlNode | undefined {
  let at = node;
  for (const name of path) at = at?.children.get(name)?.[0];
  return at;
}

export function childrenOf(node: XmlNode | undefined, name: string): readonly XmlNode[] {
  return node?.children.get(name) ?? [];
}

export function textOf(node: XmlNode | undefined, ...path: string[]): string | undefined {
  const found = child(node, ...path);
  return found === undefined ? undefined : found.text;
}
