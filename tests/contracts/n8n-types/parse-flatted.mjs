// Reads a JSON array of `flatted` texts on stdin and writes the JSON array of their values,
// each parsed by the `flatted` release n8n itself uses.
import { parse } from "flatted";

let input = "";
for await (const chunk of process.stdin) input += chunk;
process.stdout.write(JSON.stringify(JSON.parse(input).map((text) => parse(text))));
