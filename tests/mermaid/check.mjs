// Parse mermaid text from stdin with mermaid's real parser and say which diagram type it is.
// Exit 0 and print the type when the text parses; exit 1 and print the parser's message when not.
import { JSDOM } from "jsdom";

// mermaid sanitises labels with DOMPurify, which needs a DOM window even when only parsing.
const { window } = new JSDOM("");
globalThis.window = window;
globalThis.document = window.document;

const { default: mermaid } = await import("mermaid");

const chunks = [];
for await (const chunk of process.stdin) {
  chunks.push(chunk);
}
const text = Buffer.concat(chunks).toString("utf8");

try {
  const result = await mermaid.parse(text);
  process.stdout.write(`${result.diagramType}\n`);
  process.exit(0);
} catch (error) {
  process.stdout.write(`${error?.message ?? error}\n`);
  process.exit(1);
}
