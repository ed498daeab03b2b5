// Building HTML elements: el("li", {class: "x", text: "y", onclick}, ...children).

export const $ = (selector, root) => root.querySelector(selector);

/** Set attributes; `text` sets textContent, `on<event>` adds a listener, false/null skip. */
export function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
}

/** Append children, skipping null and undefined (so optional parts can be inline). */
export function fill(node, attrs, children) {
  setAttrs(node, attrs);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

export function el(tag, attrs = {}, ...children) {
  return fill(document.createElement(tag), attrs, children);
}
