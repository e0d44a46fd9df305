// Check Grafana dashboards (JSON model) against Grafana's published schema package, @grafana/schema.
//
// @grafana/schema ships TypeScript types generated from Grafana's CUE schemas (no JSON Schema), so
// the check is the TypeScript compiler's: each dashboard becomes an object literal typed as the
// package's `Dashboard` (panels: `Panel | RowPanel`), and each panel's `options` and
// `fieldConfig.defaults.custom` are typed as its plugin's `Options` / `FieldConfig` (the
// composable panelcfg types) when the package has them. Object literals get excess-property checks,
// so unknown keys fail as well as wrong types and values outside an enum.
//
// Usage: node grafana-schema.mjs FILE.json   (FILE: [{"name": str, "dashboard": {...}}, ...])
// Prints JSON: [{"name", "errors": [{"line", "source", "message"}], "panels_checked": {type: n}}].
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const here = path.dirname(fileURLToPath(import.meta.url));
const composable = (name, file) => `@grafana/schema/dist/esm/raw/composable/${name}/panelcfg/x/${file}_types.gen.js`;

// Panel plugin → its module in @grafana/schema and whether it declares a FieldConfig (custom).
const PANELS = {
  barchart: [composable('barchart', 'BarChartPanelCfg'), true],
  bargauge: [composable('bargauge', 'BarGaugePanelCfg'), false],
  gauge: [composable('gauge', 'GaugePanelCfg'), false],
  geomap: [composable('geomap', 'GeomapPanelCfg'), false],
  heatmap: [composable('heatmap', 'HeatmapPanelCfg'), true],
  histogram: [composable('histogram', 'HistogramPanelCfg'), true],
  piechart: [composable('piechart', 'PieChartPanelCfg'), true],
  stat: [composable('stat', 'StatPanelCfg'), false],
  statetimeline: [composable('statetimeline', 'StateTimelinePanelCfg'), true],
  table: [composable('table', 'TablePanelCfg'), true],
  text: [composable('text', 'TextPanelCfg'), false],
  timeseries: [composable('timeseries', 'TimeSeriesPanelCfg'), true],
};

// JSON has no TypeScript enums: Json<T> accepts an enum's values (`${E}`) where the schema names it.
// A plugin's options and custom field config are merged with the plugin's defaults when Grafana
// loads a panel (defaultsDeep), so there every key is optional (Defaulted<T>). Queries are the
// data source's (the package has no InfluxDB query type): annotation targets keep DataQuery's keys
// and accept others, as panel targets (Record<string, unknown>) do.
const PRELUDE = `
import type * as schema from '@grafana/schema';
type Json<T> = 0 extends 1 & T ? any
  : T extends string ? T | \`\${T}\`
  : T extends (infer U)[] ? Json<U>[]
  : T extends object ? { [K in keyof T]: Json<T[K]> }
  : T;
type Defaulted<T> = 0 extends 1 & T ? any
  : T extends string ? T | \`\${T}\`
  : T extends (infer U)[] ? Defaulted<U>[]
  : T extends object ? { [K in keyof T]?: Defaulted<T[K]> }
  : T;
type Annotations = Omit<schema.AnnotationContainer, 'list'> & {
  list?: schema.AnnotationQuery<schema.DataQuery & Record<string, unknown>>[];
};
type Board = Omit<schema.Dashboard, 'annotations'> & { annotations?: Annotations };
`;

function source(dashboard) {
  const lines = [PRELUDE];
  const used = new Set();
  const panels = [];
  const walk = (list) => {
    for (const p of list ?? []) {
      panels.push(p);
      if (p.type === 'row') walk(p.panels);
    }
  };
  walk(dashboard.panels);
  panels.forEach((p) => p.type in PANELS && used.add(p.type));
  for (const type of used) lines.push(`import type * as ${type} from '${PANELS[type][0]}';`);
  lines.push(`export const dashboard: Json<Board> = ${JSON.stringify(dashboard, null, 2)};`);
  const checked = {};
  panels.forEach((p, i) => {
    if (!(p.type in PANELS)) return;
    checked[p.type] = (checked[p.type] ?? 0) + 1;
    lines.push(`// panel ${i}: ${p.type} "${String(p.title ?? '').replace(/[\n\r]/g, ' ')}"`);
    lines.push(`export const options${i}: Defaulted<${p.type}.Options> = ${JSON.stringify(p.options ?? {}, null, 2)};`);
    if (PANELS[p.type][1] && p.fieldConfig?.defaults?.custom !== undefined) {
      lines.push(
        `export const custom${i}: Defaulted<${p.type}.FieldConfig> = ${JSON.stringify(p.fieldConfig.defaults.custom, null, 2)};`,
      );
    }
  });
  return { text: lines.join('\n'), checked };
}

function check(items) {
  const files = new Map();
  const checked = new Map();
  items.forEach((item, i) => {
    const file = path.join(here, `__dashboard_${i}.ts`);
    const { text, checked: c } = source(item.dashboard);
    files.set(file, text);
    checked.set(file, c);
  });
  const options = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const readFile = host.readFile.bind(host);
  const getSourceFile = host.getSourceFile.bind(host);
  host.fileExists = (f) => files.has(f) || ts.sys.fileExists(f);
  host.readFile = (f) => files.get(f) ?? readFile(f);
  host.getSourceFile = (f, lang, ...rest) =>
    files.has(f) ? ts.createSourceFile(f, files.get(f), lang, true) : getSourceFile(f, lang, ...rest);
  const program = ts.createProgram([...files.keys()], options, host);
  return items.map((item, i) => {
    const file = path.join(here, `__dashboard_${i}.ts`);
    const sf = program.getSourceFile(file);
    const lines = files.get(file).split('\n');
    const diagnostics = [...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf)];
    const errors = diagnostics.map((d) => {
      const line = d.start === undefined ? 0 : sf.getLineAndCharacterOfPosition(d.start).line;
      return {
        line: line + 1,
        source: (lines[line] ?? '').trim(),
        message: ts.flattenDiagnosticMessageText(d.messageText, '\n'),
      };
    });
    return { name: item.name, errors, panels_checked: checked.get(file) };
  });
}

const items = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
process.stdout.write(JSON.stringify(check(items)) + '\n');
