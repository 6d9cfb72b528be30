// Between the API's JSON values and the text a person reads and types.
// The API checks every value against its column; the page only turns text
// into the JSON type the column takes, and leaves the judging to the API.

export function display(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

// The text of a form field for a stored value.
export function editable(column, value) {
  if (value === null || value === undefined) return "";
  if (column.type === "json") return JSON.stringify(value, null, 2);
  return String(value);
}

const INTEGER = /^[+-]?\d+$/;

// The JSON value for typed text. Text that does not parse stays text, so the API's
// error names the column and shows what was typed. JSON that does not parse is the
// one check made here: sent as text it would be stored as a string, not refused.
export function parse(column, text) {
  if (text === "") return column.nullable ? null : (column.type === "string" ? "" : text);
  switch (column.type) {
    case "integer":
      return INTEGER.test(text.trim()) && Number.isSafeInteger(Number(text)) ? Number(text) : text;
    case "number": {
      const number = Number(text);
      return text.trim() !== "" && Number.isFinite(number) ? number : text;
    }
    case "boolean":
      return {true: true, false: false}[text.trim().toLowerCase()] ?? text;
    case "json":
      try {
        return JSON.parse(text);
      } catch {
        throw new SyntaxError("not valid JSON");
      }
    default:
      return text;
  }
}

// A filter's typed value for an operator: lists for in/nin/between, null/true/false for is.
export function filterValue(column, op, text) {
  if (op === "is") return {null: null, true: true, false: false}[text.trim().toLowerCase()] ?? text;
  if (op === "like" || op === "ilike") return text;
  const one = (part) => (column.type === "json" ? part : parse({...column, nullable: false}, part));
  if (op === "in" || op === "nin" || op === "between") {
    return text === "" ? [] : text.split(",").map((part) => one(part.trim()));
  }
  return one(text);
}

export const OPERATORS = [
  ["eq", "="], ["ne", "≠"], ["lt", "<"], ["lte", "≤"], ["gt", ">"], ["gte", "≥"],
  ["like", "like"], ["ilike", "like (any case)"], ["in", "in (a, b, …)"], ["nin", "not in (a, b, …)"],
  ["between", "between (low, high)"], ["is", "is (null, true, false)"],
];
