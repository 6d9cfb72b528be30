// The page's router and session: who is signed in, which tables they may use,
// and which view the address (#/...) names. Views live in grid.js and row.js.
import * as api from "./api.js";
import {el, plural, replace, sr, uid} from "./dom.js";
import {gridView, stopLive} from "./grid.js";
import {newRowView, rowView} from "./row.js";

const main = document.getElementById("main");
const session = {who: null, tables: null};
let pendingNotice = "";

const READ_VERBS = ["GET", "FETCH", "QUERY"];

// What every view gets: the session, and a few things the page does for it.
const context = {
  get who() { return session.who; },
  get tables() { return session.tables; },
  main,
  can(table, verb) {
    const allowed = READ_VERBS.includes(verb) || session.who.scope !== "read";
    return allowed && table.verbs.includes(verb);
  },
  go(hash, notice = "") {
    pendingNotice = notice;
    if (location.hash === hash) route(); else location.hash = hash;
  },
  notice,
  confirm,
  failure,
};

function notice(text) {
  replace(document.getElementById("notice"), text);
}

// An error as a person should read it: the status, what it means, the API's own sentence.
const STATUS_NAMES = {0: "No connection", 400: "Bad request", 401: "Not signed in", 403: "Not allowed",
                      404: "Not found", 409: "Conflict", 413: "Too large", 503: "Database unavailable"};

export function failure(error) {
  const status = error.status ?? 0;
  const title = STATUS_NAMES[status] ?? `Error ${status}`;
  return el("div", {class: "failure", role: "alert"},
    el("strong", {}, status ? `${status} ${title}: ` : `${title}: `), error.message);
}

function confirm(question, action = "Delete") {
  const dialog = document.getElementById("confirm");
  replace(document.getElementById("confirm-text"), question);
  replace(document.getElementById("confirm-ok"), action);
  dialog.returnValue = "";
  dialog.showModal();
  document.getElementById("confirm-cancel").focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), {once: true});
  });
}

// -- the session --------------------------------------------------------------------

async function loadSession() {
  session.who = (await api.call("GET", "/-/whoami")).data;
  const all = (await api.call("GET", "/-/tables")).data;
  const mine = all.filter((t) => session.who.tables === null || session.who.tables.includes(t.name));
  session.tables = new Map(mine.map((t) => [t.name, t]));
  showAccount();
}

function signOut() {
  api.key.clear();
  session.who = null;
  session.tables = null;
  showAccount();
  context.go("#/", "Signed out: the key is gone from this tab.");
}

function showAccount() {
  const who = session.who;
  const account = document.getElementById("account");
  const banner = document.getElementById("banner");
  replace(banner);
  banner.className = "";
  if (!who) return replace(account);
  if (who.kind === "open") {
    banner.className = "open-mode";
    replace(banner, el("strong", {}, "Open mode: "),
      "no API key exists yet, so anyone who can reach this server may read and change every table. ",
      "Create one with ", el("code", {}, "tiddly keys create"), " to require keys.");
    return replace(account, el("span", {}, "No key needed (open mode)"));
  }
  const what = who.kind === "login" ? `logged in as ${who.name}` : `key “${who.name}”`;
  replace(account, el("span", {class: "who"}, `${what}, ${who.scope} scope`),
    el("button", {type: "button", on: {click: signOut}}, "Sign out"));
}

function signInView(error) {
  const keyId = uid("key"), emailId = uid("email"), passwordId = uid("password");
  const useKey = async (event) => {
    event.preventDefault();
    const secret = event.target.elements.key.value.trim();
    if (!secret) return;
    api.key.set(secret);
    route();
  };
  const logIn = async (event) => {
    event.preventDefault();
    const form = event.target;
    const status = form.querySelector(".form-status");
    try {
      const answer = await api.call("POST", "/-/login",
        {email: form.elements.email.value, password: form.elements.password.value});
      api.key.set(answer.token);
      route();
    } catch (failed) {
      replace(status, failure(failed));
    }
  };
  return [
    el("h2", {tabindex: "-1"}, "Sign in"),
    error ? failure(error) : el("p", {}, "This gateway needs a key."),
    el("p", {}, "The key stays in this tab only (sessionStorage) and is sent as a header with each request."),
    el("form", {class: "card", on: {submit: useKey}},
      el("label", {for: keyId}, "API key"),
      el("input", {id: keyId, name: "key", type: "password", autocomplete: "off", required: true}),
      el("button", {type: "submit"}, "Use this key")),
    el("form", {class: "card", on: {submit: logIn}},
      el("h3", {}, "Or log in with an email and password"),
      el("label", {for: emailId}, "Email"),
      el("input", {id: emailId, name: "email", type: "email", autocomplete: "username", required: true}),
      el("label", {for: passwordId}, "Password"),
      el("input", {id: passwordId, name: "password", type: "password", autocomplete: "current-password",
                   required: true}),
      el("button", {type: "submit"}, "Log in"),
      el("div", {class: "form-status"})),
  ];
}

// -- the list of tables -----------------------------------------------------------------

function tablesView() {
  const rows = [...session.tables.values()].map((table) => {
    const rowsCell = el("td", {class: "number"}, "…");
    countCheaply(table, rowsCell);
    const may = context.can(table, "PATCH") ? "read and write" : "read";
    return el("tr", {},
      el("th", {scope: "row"}, el("a", {href: `#/t/${encodeURIComponent(table.name)}`}, table.name)),
      rowsCell,
      el("td", {class: "number"}, String(table.columns.length)),
      el("td", {}, may));
  });
  return [
    el("h2", {tabindex: "-1"}, "Tables"),
    rows.length ? el("table", {class: "grid"},
      el("caption", {}, "The tables you may use"),
      el("thead", {}, el("tr", {},
        [["Table"], ["Rows", "number"], ["Columns", "number"], ["You may"]]
          .map(([name, kind]) => el("th", {scope: "col", class: kind}, name)))),
      el("tbody", {}, rows))
      : el("p", {}, "No tables are exposed to this key."),
  ];
}

// "Cheap": one page of primary keys at the server's default page size, what a first page
// costs anyway. Under a page, that is the count; over it, COUNT(*) runs only when asked.
async function countCheaply(table, cell) {
  const probe = table.primary_key.length ? table.primary_key : table.columns
    .filter((c) => c.policy !== "write_only_hashed").slice(0, 1).map((c) => c.name);
  try {
    const page = await api.call("FETCH", api.tablePath(table.name), {select: probe});
    if (!page.next) return replace(cell, page.data.length.toLocaleString("en"));
    const count = async () => {
      try {
        const counted = await api.call("FETCH", api.tablePath(table.name), {count: true, limit: 0});
        replace(cell, counted.count.toLocaleString("en"));
      } catch (error) {
        replace(cell, failure(error));
      }
    };
    replace(cell, `more than ${page.data.length.toLocaleString("en")} `,
      el("button", {type: "button", class: "small", on: {click: count}}, "Count", sr(` the rows of ${table.name}`)));
  } catch (error) {
    replace(cell, failure(error));
  }
}

// -- routing ------------------------------------------------------------------------

// #/ | #/t/<table>?<grid state> | #/t/<table>/new | #/t/<table>/r/<key, URL-encoded, comma-separated>
function parseHash() {
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?", 2);
  const parts = path.split("/").filter(Boolean);
  return {parts, params: new URLSearchParams(query)};
}

async function route() {
  const {parts, params} = parseHash();
  stopLive();  // a grid's change feed ends with its view
  const notes = pendingNotice;
  pendingNotice = "";
  notice("");
  try {
    if (!session.who) await loadSession();
    let view;
    if (parts[0] === "t" && parts[1] !== undefined) {
      const name = decodeURIComponent(parts[1]);
      const table = session.tables.get(name);
      if (!table) throw new api.ApiError(404, {error: `no table named ${name} is open to you`});
      if (parts[2] === "new") view = await newRowView(context, table);
      else if (parts[2] === "r" && parts[3] !== undefined) view = await rowView(context, table, parts[3]);
      else view = await gridView(context, table, params);
    } else {
      view = tablesView();
    }
    document.title = `${parts[1] ? decodeURIComponent(parts[1]) + " · " : ""}Tiddly`;
    replace(main, view);
    notice(notes);  // after the view, so that a notice means the new view is up
  } catch (error) {
    if (error.status === 401) return;  // the sign-in form is up (signInAgain)
    replace(main, el("h2", {tabindex: "-1"}, "Something went wrong"), failure(error),
      el("p", {}, el("a", {href: "#/"}, "Back to the tables")));
  }
  focusHeading();
}

function focusHeading() {
  const heading = main.querySelector("h2");
  if (heading && !main.contains(document.activeElement)) heading.focus();
}

function signInAgain(event) {
  const refused = api.key.get() !== null;  // a key was sent and refused, or none was sent
  api.key.clear();
  session.who = null;
  session.tables = null;
  showAccount();
  replace(main, signInView(refused ? event.detail : null));
  focusHeading();
}

window.addEventListener("tiddly:unauthorized", signInAgain);
window.addEventListener("hashchange", route);
route();
