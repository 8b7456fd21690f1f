// A small, safe code highlighter: it tokenises the code's text and rebuilds the
// element from text nodes and <span class="tok-…">, so nothing is parsed as HTML.
// Comments, strings, numbers and keywords of the common languages; good enough to
// read code, not a full grammar.

const HASH_COMMENT = new Set(["python", "py", "sh", "bash", "shell", "zsh", "ruby", "rb", "yaml", "yml", "toml", "r", "perl", "dockerfile", "makefile", "ini", "conf"]);
const DASH_COMMENT = new Set(["sql", "lua", "haskell", "hs"]);
const NO_COMMENT = new Set(["json", "text", "txt", "plaintext", "csv", "diff", "markdown", "md"]);

const KEYWORDS = new Set(`
abstract and as assert async await break case catch class const continue def default defer del do elif else
enum except export extends false final finally fn for from func function go if impl import in interface is
lambda let loop match mod module new nil none not null of or package pass pub raise return self static struct
super switch this throw true try type typeof undefined use var void where while with yield None True False
int float double bool boolean string char long short byte unsigned signed echo local readonly then fi done esac
`.split(/\s+/).filter(Boolean));
const SQL_KEYWORDS = new Set(`select from where insert into update delete create table join left right inner outer on as and or not
null group by order limit offset having values set index primary key foreign references distinct union all case when then else end
drop alter add column view with returning default exists in is like between asc desc count sum avg min max`.split(/\s+/).filter(Boolean));

function tokenPattern(lang) {
  let comment;
  if (NO_COMMENT.has(lang)) comment = "(?!)";
  else if (HASH_COMMENT.has(lang)) comment = "#[^\\n]*";
  else if (DASH_COMMENT.has(lang)) comment = "--[^\\n]*|\\/\\*[\\s\\S]*?\\*\\/";
  else if (lang === "html" || lang === "xml" || lang === "svg") comment = "<!--[\\s\\S]*?-->";
  else if (lang === "css" || lang === "scss") comment = "\\/\\*[\\s\\S]*?\\*\\/";
  else if (lang === "") comment = "\\/\\/[^\\n]*|\\/\\*[\\s\\S]*?\\*\\/|#(?![\\w{[])[^\\n]*";
  else comment = "\\/\\/[^\\n]*|\\/\\*[\\s\\S]*?\\*\\/";
  const strings = "\"(?:\\\\.|[^\"\\\\\\n])*\"|'(?:\\\\.|[^'\\\\\\n])*'|`(?:\\\\.|[^`\\\\])*`";
  const numbers = "\\b(?:0x[0-9a-fA-F]+|\\d+(?:\\.\\d+)?(?:[eE][+-]?\\d+)?)\\b";
  const words = "\\b[A-Za-z_$][\\w$]*\\b";
  return new RegExp(`(${comment})|(${strings})|(${numbers})|(${words})`, "g");
}

export function tokenize(code, lang = "") {
  const language = String(lang || "").toLowerCase();
  const pattern = tokenPattern(language);
  const isSql = language === "sql";
  const tokens = [];
  let last = 0;
  for (const match of code.matchAll(pattern)) {
    const [text, comment, string, number, word] = match;
    let kind = null;
    if (comment) kind = "comment";
    else if (string) kind = "string";
    else if (number) kind = "number";
    else if (word) {
      if (isSql ? SQL_KEYWORDS.has(word.toLowerCase()) : KEYWORDS.has(word)) kind = "keyword";
      else if (/^[A-Z][a-z]\w*$/.test(word)) kind = "type";
      else if (code[match.index + text.length] === "(") kind = "function";
    }
    if (!kind) continue;
    if (match.index > last) tokens.push({ kind: null, text: code.slice(last, match.index) });
    tokens.push({ kind, text });
    last = match.index + text.length;
  }
  if (last < code.length) tokens.push({ kind: null, text: code.slice(last) });
  return tokens;
}

export function highlightElement(codeElement, lang) {
  const code = codeElement.textContent;
  if (code.length > 100_000) return; // not worth it, and keeps huge outputs fast
  const fragment = document.createDocumentFragment();
  for (const token of tokenize(code, lang)) {
    if (!token.kind) {
      fragment.append(document.createTextNode(token.text));
    } else {
      const span = document.createElement("span");
      span.className = `tok-${token.kind}`;
      span.textContent = token.text;
      fragment.append(span);
    }
  }
  codeElement.replaceChildren(fragment);
}
