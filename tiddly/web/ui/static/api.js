// Tiddly's own JSON API, as this page calls it: the key (or login token) lives
// only in this tab's sessionStorage and travels in the Authorization header,
// never in a cookie.

const KEY_STORE = "tiddly.key";
const ROOT = new URL("../../", document.baseURI);  // the page is at <root>/-/ui/

// Bumped whenever the key changes: a 401 to a request sent before then is stale (the key it
// carried is gone) and must not take down the sign-in form that the change put up.
let keyGeneration = 0;

export const key = {
  get: () => sessionStorage.getItem(KEY_STORE),
  set: (secret) => { keyGeneration += 1; sessionStorage.setItem(KEY_STORE, secret); },
  clear: () => { keyGeneration += 1; sessionStorage.removeItem(KEY_STORE); },
};

export class ApiError extends Error {
  constructor(status, body) {
    super(body && typeof body.error === "string" ? body.error : describeStatus(status));
    this.status = status;
    this.code = body && body.code ? body.code : `http_${status}`;
    this.details = body && body.details ? body.details : {};
  }
}

function describeStatus(status) {
  if (status === 0) return "the server cannot be reached";
  if (status === 414) return "the request is too long for the server";
  return `the server answered ${status}`;
}

export function tablePath(table) {
  return "/" + encodeURIComponent(table);
}

// pkPath: the key's values, each URL-encoded, comma-separated, as the API takes them.
export function rowPath(table, pkPath) {
  return `${tablePath(table)}/${pkPath}`;
}

// The change feed of one table (docs/changes.md): EventSource sends no header, so the key goes
// in the query string, to this page's own origin only.
export function changesUrl(table) {
  const url = new URL("-/changes", ROOT);
  url.searchParams.set("tables", table);
  const secret = key.get();
  if (secret) url.searchParams.set("access_token", secret);
  return url;
}

function headers(extra = {}) {
  const result = {Accept: "application/json", ...extra};
  const secret = key.get();
  if (secret) result.Authorization = `Bearer ${secret}`;
  return result;
}

async function send(method, path, {body, accept} = {}) {
  const init = {method, headers: headers(accept ? {Accept: accept} : {}), credentials: "omit", cache: "no-store"};
  const sentWith = keyGeneration;
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(new URL(path.slice(1), ROOT), init);
  } catch {
    throw new ApiError(0, null);
  }
  if (!response.ok) throw refused(path, sentWith, new ApiError(response.status, await response.json().catch(() => null)));
  return response;
}

// A 401 anywhere (keys turned on, the key revoked, the login expired) sends the page back to
// its sign-in form; a wrong password at /-/login is that form's own answer.
function refused(path, sentWith, error) {
  if (error.status === 401 && path !== "/-/login" && sentWith === keyGeneration) {
    window.dispatchEvent(new CustomEvent("tiddly:unauthorized", {detail: error}));
  }
  return error;
}

export async function call(method, path, body) {
  return (await send(method, path, {body})).json();
}

// The streaming export of a query (CSV or NDJSON), as a Blob to save.
export async function exportRows(table, query, mediaType) {
  return (await send("FETCH", tablePath(table), {body: query, accept: mediaType})).blob();
}

// The import API (POST a CSV or NDJSON body), with upload progress: fetch has none, XMLHttpRequest does.
// The server inserts as it reads, so the upload's progress is the import's.
export function importFile(table, file, mediaType, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", new URL(tablePath(table).slice(1), ROOT));
    const sentWith = keyGeneration;
    for (const [name, value] of Object.entries(headers({"Content-Type": mediaType}))) {
      request.setRequestHeader(name, value);
    }
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    });
    request.addEventListener("load", () => {
      let body = null;
      try { body = JSON.parse(request.responseText); } catch { /* not JSON: described by status */ }
      if (request.status >= 200 && request.status < 300) resolve(body);
      else reject(refused("", sentWith, new ApiError(request.status, body)));
    });
    request.addEventListener("error", () => reject(new ApiError(0, null)));
    request.send(file);
  });
}
