/**
 * A small, safe Markdown renderer for chat messages: paragraphs, line breaks, headings, lists, block
 * quotes, fenced and inline code, bold, italic and links. It builds DOM nodes and sets text with text nodes
 * only, so raw HTML in a message shows as text; a link is a link only when its address is `http:`,
 * `https:` or `mailto:` (anything else, `javascript:` included, stays plain text).
 * @module
 */

import { h, type Child } from "./dom.js";

/** Link schemes that become links. */
const SAFE_SCHEMES = new Set(["http:", "https:", "mailto:"]);

/** The address `href` as a safe absolute URL, or null (relative, unparsable or another scheme). */
export function safeHref(href: string): string | null {
  try {
    const url = new URL(href);
    return SAFE_SCHEMES.has(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

/** A link to `href` showing `label`, or the original text when the address is not safe. */
function link(label: string, href: string, original: string): Child {
  const safe = safeHref(href);
  if (safe === null) return original;
  return h("a", { href: safe, target: "_blank", rel: "noopener noreferrer nofollow" }, ...inline(label));
}

/** Inline patterns, tried at each position; the earliest match wins. */
const INLINE: { re: RegExp; make: (m: RegExpExecArray) => Child }[] = [
  { re: /`([^`\n]+)`/y, make: (m) => h("code", {}, m[1]) },
  { re: /\[([^\]\n]+)\]\(([^)\s]+)\)/y, make: (m) => link(m[1], m[2], m[0]) },
  { re: /\*\*([^*\n]+)\*\*/y, make: (m) => h("strong", {}, ...inline(m[1])) },
  { re: /__([^_\n]+)__/y, make: (m) => h("strong", {}, ...inline(m[1])) },
  { re: /\*([^*\n]+)\*/y, make: (m) => h("em", {}, ...inline(m[1])) },
  { re: /(?<![\w])_([^_\n]+)_(?![\w])/y, make: (m) => h("em", {}, ...inline(m[1])) },
  { re: /(?:https?:\/\/|mailto:)[^\s<>()]+[^\s<>().,;:!?'"]/y, make: (m) => link(m[0], m[0], m[0]) },
];

/** Characters that may start an inline pattern (everything else is copied as text in one go). */
const STARTS = /[`[*_hm]/g;

/** `text` with inline Markdown, as nodes. */
export function inline(text: string): Child[] {
  const out: Child[] = [];
  let plain = "";
  let i = 0;
  while (i < text.length) {
    STARTS.lastIndex = i;
    const next = STARTS.exec(text);
    if (!next) break;
    plain += text.slice(i, next.index);
    i = next.index;
    let matched = false;
    for (const { re, make } of INLINE) {
      re.lastIndex = i;
      const m = re.exec(text);
      if (m) {
        if (plain) out.push(plain);
        plain = "";
        out.push(make(m));
        i += m[0].length;
        matched = true;
        break;
      }
    }
    if (!matched) {
      plain += text[i];
      i += 1;
    }
  }
  plain += text.slice(i);
  if (plain) out.push(plain);
  return out;
}

/** Lines joined with `<br>`s, each with inline Markdown. */
function lines(rows: string[]): Child[] {
  const out: Child[] = [];
  rows.forEach((row, n) => {
    if (n > 0) out.push(h("br"));
    out.push(...inline(row));
  });
  return out;
}

const FENCE = /^\s*(```|~~~)\s*([\w+-]*)\s*$/;
const HEADING = /^(#{1,6})\s+(.*)$/;
const BULLET = /^\s*[-*+]\s+(.*)$/;
const NUMBERED = /^\s*\d{1,9}[.)]\s+(.*)$/;
const QUOTE = /^\s*>\s?(.*)$/;

/** `source` rendered as a fragment of block elements. */
export function renderMarkdown(source: string): DocumentFragment {
  const fragment = document.createDocumentFragment();
  const rows = source.replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < rows.length) {
    const row = rows[i];
    const fence = FENCE.exec(row);
    if (fence) {
      const code: string[] = [];
      i += 1;
      while (i < rows.length && !rows[i].trim().startsWith(fence[1])) {
        code.push(rows[i]);
        i += 1;
      }
      i += 1;
      const block = h("code", fence[2] ? { "data-lang": fence[2] } : {}, code.join("\n"));
      fragment.appendChild(h("pre", {}, block));
      continue;
    }
    if (row.trim() === "") {
      i += 1;
      continue;
    }
    const heading = HEADING.exec(row);
    if (heading) {
      const level = Math.min(6, heading[1].length + 2) as 3 | 4 | 5 | 6;
      fragment.appendChild(h(`h${level}`, {}, ...inline(heading[2])));
      i += 1;
      continue;
    }
    const list = BULLET.test(row) ? BULLET : NUMBERED.test(row) ? NUMBERED : null;
    if (list) {
      const items: Child[] = [];
      while (i < rows.length && list.test(rows[i])) {
        items.push(h("li", {}, ...inline((list.exec(rows[i]) as RegExpExecArray)[1])));
        i += 1;
      }
      fragment.appendChild(h(list === BULLET ? "ul" : "ol", {}, ...items));
      continue;
    }
    if (QUOTE.test(row)) {
      const quoted: string[] = [];
      while (i < rows.length && QUOTE.test(rows[i])) {
        quoted.push((QUOTE.exec(rows[i]) as RegExpExecArray)[1]);
        i += 1;
      }
      fragment.appendChild(h("blockquote", {}, h("p", {}, ...lines(quoted))));
      continue;
    }
    const paragraph: string[] = [];
    while (
      i < rows.length &&
      rows[i].trim() !== "" &&
      !FENCE.test(rows[i]) &&
      !HEADING.test(rows[i]) &&
      !BULLET.test(rows[i]) &&
      !NUMBERED.test(rows[i]) &&
      !QUOTE.test(rows[i])
    ) {
      paragraph.push(rows[i]);
      i += 1;
    }
    fragment.appendChild(h("p", {}, ...lines(paragraph)));
  }
  return fragment;
}
