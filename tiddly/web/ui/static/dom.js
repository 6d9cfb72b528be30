// Building the page: text always goes in as text nodes (never parsed as HTML),
// so a value holding "<script>" shows as those characters.

const PROPERTIES = new Set(["value", "checked", "selected", "disabled", "readOnly", "required", "multiple"]);

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "on") {
      for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    } else if (name === "class") {
      node.className = value;
    } else if (PROPERTIES.has(name)) {
      node[name] = value;
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function replace(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

// A label and the control it names, wired by id.
let lastId = 0;
export function uid(prefix) {
  lastId += 1;
  return `${prefix}-${lastId}`;
}

export function sr(text) {  // read by screen readers, not shown
  return el("span", {class: "sr-only"}, text);
}

export function plural(n, one, many) {
  return `${n.toLocaleString("en")} ${n === 1 ? one : many}`;
}
