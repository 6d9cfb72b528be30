// A table's rows: filters, sort, chosen columns, keyset pages, export and import.
// The grid's settings live in the address (#/t/<table>?f=...&sort=...), so a view can
// be bookmarked; the page cursors live in memory (a stack of the API's `next` cursors).
import * as api from "./api.js";
import {el, plural, replace, sr, uid} from "./dom.js";
import {display, filterValue, OPERATORS} from "./values.js";

const PAGE_SIZES = [10, 25, 50, 100, 250, 500, 1000];
const DEFAULT_SIZE = 50;
const NUMERIC = new Set(["integer", "number", "decimal"]);  // right-aligned
const LONG_TEXT = 200;  // characters shown in a cell; the rest is in its title
const paging = new Map();  // grid address -> {stack, after, count}, while the tab lives
const lastGrid = new Map();  // table name -> the address of its grid as last seen

export function lastGridHash(tableName) {
  return lastGrid.get(tableName) ?? gridHash(tableName);
}

export function readableColumns(table) {
  return table.columns.filter((c) => c.policy !== "write_only_hashed");
}

export function pkPath(table, row) {
  return table.primary_key.map((name) => encodeURIComponent(display(row[name]))).join(",");
}

export function rowHash(table, pk) {
  return `#/t/${encodeURIComponent(table.name)}/r/${pk}`;
}

// The address of a grid; filters are [column, operator, typed text] triples.
export function gridHash(tableName, {filters = [], sort = "", desc = false, cols = null, size = DEFAULT_SIZE} = {}) {
  const params = new URLSearchParams();
  if (filters.length) params.set("f", JSON.stringify(filters));
  if (sort) params.set("sort", sort);
  if (sort && desc) params.set("dir", "desc");
  if (cols) params.set("cols", JSON.stringify(cols));
  if (size !== DEFAULT_SIZE) params.set("size", String(size));
  const query = params.toString();
  return `#/t/${encodeURIComponent(tableName)}${query ? "?" + query : ""}`;
}

function parseJson(text, fallback) {
  try {
    return text ? JSON.parse(text) : fallback;
  } catch {
    return fallback;
  }
}

function quoted(name) {  // an orderby term names its column in double quotes, SQL style
  return `"${name.replaceAll('"', '""')}"`;
}

// The parent a column points to: a single-column relation to a table this key may use.
function parentLinks(ctx, table) {
  const links = new Map();
  for (const relation of table.relations || []) {
    const target = ctx.tables.get(relation.table);
    if (!relation.many && target && relation.columns.length === 1) links.set(relation.columns[0], {relation, target});
  }
  return links;
}

export function parentHash(target, relation, values) {
  const byKey = relation.references.length === target.primary_key.length
    && relation.references.every((name, i) => name === target.primary_key[i]);
  if (byKey) return rowHash(target, values.map((v) => encodeURIComponent(display(v))).join(","));
  const filters = relation.references.map((name, i) => [name, "eq", display(values[i])]);
  return gridHash(target.name, {filters});
}

// The grid on screen listens to its table's changes; one at a time, closed when the view goes.
let live = null;

export function stopLive() {
  if (live) live.close();
  live = null;
}

// Others' inserts, updates and deletes show up as they happen: the page on screen is read again
// (same filters, sort and page), once for a burst of changes.
function listen(table, reload) {
  stopLive();
  if (typeof EventSource === "undefined") return;
  const source = new EventSource(api.changesUrl(table.name));
  let pending = null;
  const changed = () => {
    if (pending === null) pending = setTimeout(() => { pending = null; reload(); }, 100);
  };
  for (const op of ["insert", "update", "delete"]) source.addEventListener(op, changed);
  live = source;
}

export async function gridView(ctx, table, params) {
  const columns = readableColumns(table);
  const byName = new Map(columns.map((c) => [c.name, c]));
  const state = {
    filters: parseJson(params.get("f"), []).filter((f) => Array.isArray(f) && f.length === 3 && byName.has(f[0])),
    sort: byName.has(params.get("sort")) ? params.get("sort") : "",
    desc: params.get("dir") === "desc",
    cols: parseJson(params.get("cols"), null),
    size: PAGE_SIZES.includes(Number(params.get("size"))) ? Number(params.get("size")) : DEFAULT_SIZE,
  };
  const parents = parentLinks(ctx, table);
  const results = el("section", {class: "results", "aria-label": "Rows"});
  const filterErrors = [];
  let memo;

  const chosen = () => columns.filter((c) => !state.cols || state.cols.includes(c.name)
    || table.primary_key.includes(c.name));

  function query() {
    const where = state.filters.map(([name, op, text]) => ({[name]: {[op]: filterValue(byName.get(name), op, text)}}));
    const q = {select: chosen().map((c) => c.name)};
    if (where.length === 1) q.where = where[0];
    if (where.length > 1) q.where = {and: where};
    if (state.sort) q.orderby = `${quoted(state.sort)}${state.desc ? " desc" : ""}`;
    return q;
  }

  function remember() {
    const hash = gridHash(table.name, state);
    if (location.hash !== hash) history.replaceState(null, "", hash);
    lastGrid.set(table.name, hash);
    if (!paging.has(hash)) paging.set(hash, {stack: [], after: null, count: null});
    memo = paging.get(hash);
  }

  function changed(focusKey) {  // settings changed: back to the first page
    remember();
    Object.assign(memo, {stack: [], after: null, count: null});
    load(focusKey);
  }

  let loads = 0;  // only the latest request's answer is shown

  async function load(focusKey) {
    const mine = ++loads;
    results.querySelectorAll(".pager button").forEach((button) => { button.disabled = true; });
    filterErrors.forEach((node) => replace(node));
    let page;
    try {
      page = await api.call("FETCH", api.tablePath(table.name), {...query(), limit: state.size,
                                                                   ...(memo.after ? {after: memo.after} : {})});
      if (mine !== loads) return;
    } catch (error) {
      if (mine !== loads) return;
      const index = state.filters.findIndex(([name]) => name === error.details.column);
      if (index >= 0) replace(filterErrors[index], error.message);
      return replace(results, ctx.failure(error));
    }
    replace(results, renderPage(page));
    // Keep the keyboard where it was: the same button in the new page (or the next one, once disabled).
    const find = (key) => results.querySelector(`[data-focus="${CSS.escape(key)}"]:not(:disabled)`);
    if (focusKey) (find(focusKey) || find("next") || find("previous"))?.focus();
  }

  function renderPage(page) {
    const rows = page.data;
    const first = memo.stack.length * state.size + 1;
    // A full last page still carries a `next` (keyset paging cannot know); a known count can.
    const next = memo.count !== null && first + rows.length - 1 >= memo.count ? null : page.next;
    const status = el("p", {class: "page-status", role: "status"}, pageStatus(rows.length, first, next));
    if (memo.count === null && (memo.after || next)) {
      status.append(" ", el("button", {type: "button", class: "small", on: {click: count}}, "Count all rows"));
    }
    const pageTo = (after, stack, focusKey) => () => {
      Object.assign(memo, {after, stack});
      load(focusKey);
    };
    const pager = el("nav", {class: "pager", "aria-label": "Pages"},
      el("button", {type: "button", "data-focus": "first", disabled: !memo.after,
                    on: {click: pageTo(null, [], "first")}}, "First page"),
      el("button", {type: "button", "data-focus": "previous", disabled: !memo.after,
                    on: {click: pageTo(memo.stack.at(-1), memo.stack.slice(0, -1), "previous")}}, "Previous page"),
      el("button", {type: "button", "data-focus": "next", disabled: !next,
                    on: {click: pageTo(next, [...memo.stack, memo.after], "next")}}, "Next page"));
    return [status, renderTable(rows), pager];
  }

  function pageStatus(length, first, next) {
    const total = memo.count !== null ? ` of ${memo.count.toLocaleString("en")}` : "";
    if (!memo.after && !next) {
      return length === 0 ? (state.filters.length ? "No rows match." : "No rows.") : `${plural(length, "row", "rows")}.`;
    }
    if (length === 0) return `No more rows${total}.`;
    return `Rows ${first.toLocaleString("en")}–${(first + length - 1).toLocaleString("en")}${total}${next ? "" : " (the last page)"}.`;
  }

  async function count() {
    try {
      const { where } = query();
      memo.count = (await api.call("FETCH", api.tablePath(table.name), {where, count: true, limit: 0})).count;
      load();
    } catch (error) {
      results.prepend(ctx.failure(error));
    }
  }

  function renderTable(rows) {
    const shown = chosen();
    const head = el("tr", {}, shown.map((column) => {
      const sorted = state.sort === column.name;
      const toggle = () => {
        Object.assign(state, {sort: column.name, desc: sorted ? !state.desc : false});
        changed(`sort:${column.name}`);
      };
      return el("th", {scope: "col", class: NUMERIC.has(column.type) ? "number" : null, "aria-sort": sorted ? (state.desc ? "descending" : "ascending") : null},
        el("button", {type: "button", class: "sort", "data-focus": `sort:${column.name}`, on: {click: toggle}},
          column.name, el("span", {class: "arrow", "aria-hidden": "true"}, sorted ? (state.desc ? " ▼" : " ▲") : "")));
    }));
    const body = rows.map((row) => el("tr", {}, shown.map((column) => cell(row, column))));
    if (!rows.length) body.push(el("tr", {}, el("td", {colspan: shown.length, class: "empty"}, "No rows.")));
    return el("div", {class: "scroll"}, el("table", {class: "grid"},
      el("caption", {class: "sr-only"}, `Rows of ${table.name}`),
      el("thead", {}, head), el("tbody", {}, body)));
  }

  function cell(row, column) {
    const value = row[column.name];
    if (value === null || value === undefined) return el("td", {class: "null"}, "null");
    const text = display(value);
    const shown = text.length > LONG_TEXT ? text.slice(0, LONG_TEXT) + "…" : text;
    const attrs = {class: NUMERIC.has(column.type) ? "number" : null, title: shown !== text ? text : null};
    if (table.primary_key.includes(column.name)) {
      return el("td", attrs, el("a", {href: rowHash(table, pkPath(table, row))}, shown, sr(` (open this ${table.name} row)`)));
    }
    const parent = parents.get(column.name);
    if (parent) {
      return el("td", attrs, el("a", {href: parentHash(parent.target, parent.relation, [value])},
        shown, sr(` (open the ${parent.target.name} row)`)));
    }
    return el("td", attrs, shown);
  }

  // -- the controls ------------------------------------------------------------------

  function filtersForm() {
    const list = el("div", {class: "filter-list"});
    const draft = state.filters.map((f) => [...f]);
    const draw = () => {
      filterErrors.length = 0;
      replace(list, draft.length ? draft.map((f, i) => filterRow(f, i)) : el("p", {class: "hint"}, "No filters: every row."));
    };
    const filterRow = (filter, i) => {
      const n = i + 1, columnId = uid("fc"), opId = uid("fo"), valueId = uid("fv"), errorId = uid("fe");
      const error = el("span", {class: "field-error", id: errorId});
      filterErrors.push(error);
      const valueLabel = el("label", {for: valueId, class: "sr-only"}, `Filter ${n}: value for ${filter[0]}`);
      return el("div", {class: "filter"},
        el("label", {for: columnId, class: "sr-only"}, `Filter ${n}: column`),
        el("select", {id: columnId, on: {change: (e) => { filter[0] = e.target.value; replace(valueLabel, `Filter ${n}: value for ${filter[0]}`); }}},
          columns.map((c) => el("option", {value: c.name, selected: c.name === filter[0]}, c.name))),
        el("label", {for: opId, class: "sr-only"}, `Filter ${n}: operator`),
        el("select", {id: opId, on: {change: (e) => { filter[1] = e.target.value; }}},
          OPERATORS.map(([op, label]) => el("option", {value: op, selected: op === filter[1]}, label))),
        valueLabel,
        el("input", {id: valueId, type: "text", value: filter[2], "aria-describedby": errorId,
                     on: {input: (e) => { filter[2] = e.target.value; }}}),
        el("button", {type: "button", on: {click: () => { draft.splice(i, 1); draw(); }}}, "Remove", sr(` filter ${n}`)),
        error);
    };
    const add = () => {
      draft.push([columns[0].name, "eq", ""]);
      draw();
      list.querySelector(".filter:last-child select")?.focus();
    };
    const apply = (event) => {
      event.preventDefault();
      state.filters = draft.map((f) => [...f]);
      changed();
    };
    const clear = () => {
      draft.length = 0;
      draw();
      state.filters = [];
      changed();
    };
    draw();
    return el("form", {class: "filters", on: {submit: apply}},
      el("fieldset", {},
        el("legend", {}, "Filters (all must hold)"),
        list,
        el("div", {class: "buttons"},
          el("button", {type: "button", on: {click: add}}, "Add a filter"),
          el("button", {type: "submit"}, "Apply filters"),
          el("button", {type: "button", on: {click: clear}}, "Clear filters"))));
  }

  function columnsChooser() {
    const boxes = columns.map((column) => {
      const id = uid("col"), fixed = table.primary_key.includes(column.name);
      const toggle = (event) => {
        const current = chosen().map((c) => c.name);
        const next = event.target.checked ? [...current, column.name] : current.filter((n) => n !== column.name);
        state.cols = next.length === columns.length ? null : columns.map((c) => c.name).filter((n) => next.includes(n));
        changed();
      };
      return el("div", {class: "check"},
        el("input", {id, type: "checkbox", checked: chosen().includes(column), disabled: fixed, on: {change: toggle}}),
        el("label", {for: id}, column.name), fixed ? el("span", {class: "hint"}, " (the key: always shown)") : null);
    });
    return el("details", {class: "columns"}, el("summary", {}, "Columns"), el("fieldset", {},
      el("legend", {class: "sr-only"}, "Columns to show"), boxes));
  }

  function pageSize() {
    const id = uid("size");
    return el("div", {class: "inline"},
      el("label", {for: id}, "Rows per page"),
      el("select", {id, on: {change: (e) => { state.size = Number(e.target.value); changed(); }}},
        PAGE_SIZES.map((n) => el("option", {value: n, selected: n === state.size}, String(n)))));
  }

  function exportButtons() {
    const status = el("span", {class: "form-status", role: "status"});
    const save = async (mediaType, extension) => {
      replace(status, "Exporting…");
      try {
        const { where, orderby, select } = query();
        const blob = await api.exportRows(table.name, {where, orderby, select}, mediaType);
        const href = URL.createObjectURL(blob);
        const link = el("a", {href, download: `${table.name}.${extension}`, hidden: true});
        document.body.append(link);
        link.click();
        link.remove();
        setTimeout(() => URL.revokeObjectURL(href), 60_000);
        replace(status, `Exported ${table.name}.${extension} (${blob.size.toLocaleString("en")} bytes).`);
      } catch (error) {
        replace(status, ctx.failure(error));
      }
    };
    return el("div", {class: "inline"},
      el("span", {}, "Export these rows (every page): "),
      el("button", {type: "button", on: {click: () => save("text/csv", "csv")}}, "Export CSV"),
      el("button", {type: "button", on: {click: () => save("application/x-ndjson", "ndjson")}}, "Export NDJSON"),
      status);
  }

  function importForm() {
    const fileId = uid("file"), progressId = uid("progress");
    const progress = el("progress", {id: progressId, max: "100", value: 0});
    const progressBox = el("span", {class: "progress", hidden: true}, el("label", {for: progressId}, "Uploaded"), progress);
    const status = el("span", {class: "form-status", role: "status"});
    const submit = async (event) => {
      event.preventDefault();
      const file = event.target.elements.file.files[0];
      if (!file) return replace(status, "Choose a file first.");
      const ndjson = /\.(ndjson|jsonl)$/i.test(file.name);
      progressBox.hidden = false;
      progress.value = 0;
      replace(status, "Importing…");
      try {
        const answer = await api.importFile(table.name, file, ndjson ? "application/x-ndjson" : "text/csv",
          (loaded, total) => { progress.value = Math.round((100 * loaded) / total); });
        progress.value = 100;
        replace(status, `Imported ${plural(answer.count, "row", "rows")} from ${file.name}.`);
        event.target.reset();
        changed();
      } catch (error) {
        replace(status, ctx.failure(error), "Nothing was imported.");
      }
    };
    return el("form", {class: "inline", on: {submit}},
      el("label", {for: fileId}, "Import a CSV or NDJSON file"),
      el("input", {id: fileId, name: "file", type: "file", accept: ".csv,text/csv,.ndjson,.jsonl"}),
      el("button", {type: "submit"}, "Import"), progressBox, status);
  }

  remember();
  load();
  listen(table, () => { if (results.isConnected) load(); else stopLive(); });
  return [
    el("div", {class: "title"},
      el("h2", {tabindex: "-1"}, table.name),
      ctx.can(table, "POST") ? el("a", {class: "button", href: `#/t/${encodeURIComponent(table.name)}/new`}, "Insert a row") : null),
    el("section", {class: "controls", "aria-label": "Filters and settings"},
      filtersForm(),
      el("div", {class: "settings"}, columnsChooser(), pageSize(), exportButtons(),
        ctx.can(table, "POST") ? importForm() : null)),
    results,
  ];
}
