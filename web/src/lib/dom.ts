/**
 * Building DOM nodes: `h(tag, props, ...children)`. Text always goes in through text nodes, never through
 * markup, so nothing a user, a model or an administrator writes can become HTML.
 * @module
 */

/** A child: a node, a string (a text node) or nothing. */
export type Child = Node | string | null | undefined | false;

/** Attributes (`class`, `aria-*`, `type`, ...) and event handlers (`onclick`, ...) of an element. */
export type Props = Record<string, string | number | boolean | ((event: Event) => void) | undefined>;

/** A new `tag` element with `props` and `children`. `false`/`undefined` attributes are left out. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === false) continue;
    if (typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, ...children);
  return element;
}

/** Appends `children` to `parent` (strings as text nodes). */
export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  }
}

/** Replaces the children of `parent` with `children`. */
export function replace(parent: Node, ...children: Child[]): void {
  while (parent.firstChild) parent.removeChild(parent.firstChild);
  append(parent, ...children);
}

/** The element with id `id` (the pages' fixed skeleton); throws when the page lacks it. */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element as T;
}

/** A local, readable time for an RFC 3339 timestamp (the input itself when it does not parse). */
export function time(stamp: string | undefined): string {
  if (!stamp) return "";
  const date = new Date(stamp);
  return Number.isNaN(date.getTime()) ? stamp : date.toLocaleString();
}
