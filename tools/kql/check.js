#!/usr/bin/env node
// Kusto's own analyzer (npm @kusto/language-service-next, the one behind the portal's query
// editor) over a batch of KQL queries, against the Application Insights schema in
// appinsights-schema.json. Why the real analyzer: a query that names a column that does not
// exist, or misuses an operator, is not an error until someone opens the panel or the alert
// never fires; this finds it in `make test`.
//
// Input (stdin): {"queries": [{"id": "<where it comes from>", "text": "<KQL>"}, ...]}
// Output (stdout): {"analyzer": "<version>", "results": [{"id", "diagnostics": [{"severity",
//   "code", "message", "start", "length", "line"}]}]}
// One process for the whole batch: loading the analyzer takes a second or two.
'use strict';

const fs = require('fs');
const path = require('path');

require('@kusto/language-service-next/bridge.js');
require('@kusto/language-service-next/Kusto.Language.Bridge.js');

/* global Kusto */
const K = Kusto.Language;
const S = Kusto.Language.Symbols;

function globals(schemaPath) {
  const schema = JSON.parse(fs.readFileSync(schemaPath, 'utf8'));
  const tables = Object.entries(schema.tables).map(([name, own]) => {
    const columns = { ...schema.common, ...own };
    const spec = Object.entries(columns)
      .map(([column, type]) => `['${column}']:${type}`)
      .join(', ');
    return new S.TableSymbol.$ctor7(name, `(${spec})`, null);
  });
  const db = new S.DatabaseSymbol.$ctor2(schema.database, null, tables);
  return K.GlobalState.Default.WithDatabase(db);
}

function lineOf(text, offset) {
  return text.slice(0, offset).split('\n').length;
}

function analyze(state, query) {
  const code = K.KustoCode.ParseAndAnalyze(query.text, state);
  const diagnostics = code.GetDiagnostics();
  const found = [];
  for (let i = 0; i < diagnostics.Count; i++) {
    const d = diagnostics.getItem(i);
    found.push({
      severity: String(d.Severity),
      code: String(d.Code),
      message: String(d.Message),
      start: d.Start,
      length: d.Length,
      line: lineOf(query.text, d.Start),
    });
  }
  return { id: query.id, diagnostics: found };
}

function main() {
  const schemaPath = process.argv[2] || path.join(__dirname, 'appinsights-schema.json');
  const input = JSON.parse(fs.readFileSync(0, 'utf8'));
  const state = globals(schemaPath);
  const version = require('@kusto/language-service-next/package.json').version;
  const results = input.queries.map((q) => analyze(state, q));
  process.stdout.write(JSON.stringify({ analyzer: version, results }));
}

main();
