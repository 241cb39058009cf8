import { describe, expect, it } from 'vitest';
import { el, escapeAttr, escapeText, renderXml } from './XmlBuilder.js';
import { parseXml } from './parseXml.js';

describe('XmlBuilder', () => {
  it('escapes text and attributes so values round-trip through a real parser', () => {
    const hostile = `"'<>&\n\t]]><!--`;
    const xml = renderXml(el('a', { v: hostile }, el('b', {}, hostile)));
    const { node } = parseXml(xml);
    expect(node.attrs['v']).toBe(hostile);
    expect(node.children.get('b')?.[0]?.text).toBe(hostile.trim());
  });

  it('drops undefined attributes and empty children', () => {
    expect(renderXml(el('a', { x: undefined, y: 1 }, undefined, false, null))).toBe('<a y="1"/>\n');
  });

  it('refuses names it did not expect and characters XML cannot carry', () => {
    expect(() => el('a b')).toThrow();
    expect(() => el('a', { 'x="1" onload': 'y' })).toThrow();
    expect(() => escapeText('bell\u0007')).toThrow();
    expect(escapeAttr('a"b')).toBe('a&quot;b');
  });
});
