// One row: view it, edit it (PATCH), delete it (after a confirmation), or insert a new one.
// The API judges every value; its error lands beside the field that details.column names.
import * as api from "./api.js";
import {el, replace, uid} from "./dom.js";
import {gridHash, lastGridHash, parentHash, rowHash} from "./grid.js";
import {display, editable, parse} from "./values.js";

const TEXTAREA_OVER = 1000;  // text columns longer than this get a text area

function idPath(id) {  // the API's `id` (a value, or a list for a key of several columns) as a path
  return (Array.isArray(id) ? id : [id]).map((value) => encodeURIComponent(display(value))).join(",");
}

function hintFor(column, mode) {
  const parts = [column.type];
  if (mode === "insert" && column.required) parts.push("required");
  if (column.policy === "read_only") parts.push("read-only");
  if (column.policy === "write_only_hashed") {
    parts.push(mode === "insert" ? "write-only: never shown again" : "write-only: never shown; empty keeps it");
  } else if (column.nullable) {
    parts.push("empty means null");
  }
  return parts.join(", ");
}

function field(column, value, mode) {
  const id = uid("field"), hintId = uid("hint"), errorId = uid("error");
  const readOnly = column.policy === "read_only";
  const writeOnly = column.policy === "write_only_hashed";
  const original = writeOnly || value === undefined ? "" : editable(column, value);
  const common = {id, name: column.name, "aria-describedby": `${hintId} ${errorId}`};
  let input;
  if (column.type === "boolean" && !readOnly) {
    input = el("select", common,
      el("option", {value: ""}, column.nullable ? "null" : "(choose)"),
      el("option", {value: "true"}, "true"), el("option", {value: "false"}, "false"));
    input.value = original;
  } else if (!writeOnly && (column.type === "json" || (column.type === "string"
             && (column.max_length ?? Infinity) > TEXTAREA_OVER))) {
    input = el("textarea", {...common, rows: column.type === "json" ? 4 : 3, readOnly, value: original});
  } else {
    const numeric = {integer: "numeric", number: "decimal", decimal: "decimal"}[column.type];
    input = el("input", {...common, type: writeOnly ? "password" : "text", readOnly, value: original,
                         inputmode: numeric, autocomplete: writeOnly ? "new-password" : "off"});
  }
  const error = el("span", {class: "field-error", id: errorId});
  const node = el("div", {class: "field"},
    el("label", {for: id}, column.name),
    input,
    el("span", {class: "hint", id: hintId}, hintFor(column, mode)),
    error);
  return {
    column, node, input, readOnly,
    // {send, value}: whether the field goes in the request, and its JSON value (may throw SyntaxError).
    read() {
      const text = input.value;
      if (readOnly) return {send: false};
      if (writeOnly || mode === "insert") return text === "" ? {send: false} : {send: true, value: parse(column, text)};
      return text === original ? {send: false} : {send: true, value: parse(column, text)};
    },
    showError(message) {
      replace(error, message);
      input.setAttribute("aria-invalid", "true");
    },
    clearError() {
      replace(error);
      input.removeAttribute("aria-invalid");
    },
  };
}

// The form of a row: collect what changed, send it, put an API error beside its field.
// send(body) makes the request and answers [the address to go to, the notice to show there].
function rowForm(ctx, table, columns, data, mode, send, extraButtons = []) {
  const fields = columns.map((column) => field(column, data ? data[column.name] : undefined, mode));
  const status = el("div", {class: "form-status"});
  const submit = async (event) => {
    event.preventDefault();
    fields.forEach((f) => f.clearError());
    replace(status);
    const body = {};
    for (const f of fields) {
      try {
        const {send: include, value} = f.read();
        if (include) body[f.column.name] = value;
      } catch (error) {
        f.showError(`${f.column.name}: ${error.message}`);
        f.input.focus();
        return;
      }
    }
    if (mode === "edit" && !Object.keys(body).length) return replace(status, "Nothing changed.");
    const here = location.hash, button = event.submitter;
    button.disabled = true;  // one request at a time
    try {
      const [hash, notice] = await send(body);
      if (location.hash === here) ctx.go(hash, notice);  // unless the person has moved on meanwhile
    } catch (error) {
      const named = fields.find((f) => f.column.name === error.details.column);
      if (named && [400, 409].includes(error.status)) {
        named.showError(error.message);
        named.input.focus();
        replace(status, el("p", {role: "alert"}, `Not saved: ${named.column.name} needs attention.`));
      } else {
        replace(status, ctx.failure(error));
      }
    } finally {
      button.disabled = false;
    }
  };
  return el("form", {class: "row-form", on: {submit}},
    fields.map((f) => f.node),
    el("div", {class: "buttons"}, el("button", {type: "submit"}, mode === "insert" ? "Insert" : "Save"), extraButtons),
    status);
}

function readOnlyRecord(table, data) {
  return el("dl", {class: "record"}, table.columns
    .filter((c) => c.policy !== "write_only_hashed")
    .map((c) => [el("dt", {}, c.name), el("dd", {class: data[c.name] === null ? "null" : null},
      data[c.name] === null ? "null" : display(data[c.name]))]));
}

// Links to the parent row (a many-to-one relation) and to the child rows (one-to-many).
function related(ctx, table, data) {
  const links = [];
  for (const relation of table.relations || []) {
    const target = ctx.tables.get(relation.table);
    const values = relation.columns.map((name) => data[name]);
    if (!target || values.some((v) => v === null || v === undefined)) continue;
    if (relation.many) {
      const filters = relation.references.map((name, i) => [name, "eq", display(values[i])]);
      const where = relation.references.map((name, i) => `${name} = ${display(values[i])}`).join(" and ");
      links.push(el("li", {}, el("a", {href: gridHash(target.name, {filters})}, `${relation.name}: the ${target.name} rows with ${where}`)));
    } else {
      links.push(el("li", {}, el("a", {href: parentHash(target, relation, values)},
        `${relation.name}: ${target.name} ${values.map(display).join(", ")}`)));
    }
  }
  return links.length ? el("section", {class: "related"}, el("h3", {}, "Related rows"), el("ul", {}, links)) : null;
}

export async function rowView(ctx, table, pk) {
  const path = api.rowPath(table.name, pk);
  const {data} = await api.call("GET", path);
  const title = `${table.name} ${table.primary_key.map((name) => display(data[name])).join(", ")}`;
  let body;
  if (ctx.can(table, "PATCH")) {
    const remove = async () => {
      if (!(await ctx.confirm(`Delete ${title}? This cannot be undone.`))) return;
      try {
        await api.call("DELETE", path);
        ctx.go(lastGridHash(table.name), `Deleted ${title}.`);
      } catch (error) {
        ctx.notice(ctx.failure(error));
      }
    };
    const deleteButton = ctx.can(table, "DELETE")
      ? el("button", {type: "button", class: "danger", on: {click: remove}}, "Delete") : null;
    body = rowForm(ctx, table, table.columns, data, "edit", async (changes) => {
      const answer = await api.call("PATCH", path, changes);
      return [rowHash(table, idPath(answer.id)), `Saved ${title}.`];
    }, [deleteButton]);
  } else {
    body = readOnlyRecord(table, data);
  }
  return [
    el("p", {class: "crumbs"}, el("a", {href: lastGridHash(table.name)}, `← ${table.name}`)),
    el("h2", {tabindex: "-1"}, title),
    body,
    related(ctx, table, data),
  ];
}

export async function newRowView(ctx, table) {
  const columns = table.columns.filter((c) => c.policy === "normal" || c.policy === "write_only_hashed");
  const form = rowForm(ctx, table, columns, null, "insert", async (values) => {
    const answer = await api.call("POST", api.tablePath(table.name), values);
    const inserted = `Inserted ${table.name} ${display(answer.id)}.`;
    return [table.primary_key.length ? rowHash(table, idPath(answer.id)) : lastGridHash(table.name), inserted];
  });
  return [
    el("p", {class: "crumbs"}, el("a", {href: lastGridHash(table.name)}, `← ${table.name}`)),
    el("h2", {tabindex: "-1"}, `New row in ${table.name}`),
    form,
  ];
}
