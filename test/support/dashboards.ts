// The Grafana dashboards of deploy/grafana/dashboards as the tests read them: every panel's
// PromQL, the metric names an expression refers to, the dashboard variables and their
// substitution.
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const DASHBOARD_DIR = fileURLToPath(
  new URL('../../deploy/grafana/dashboards/', import.meta.url),
);

interface Target {
  expr?: string;
  datasource?: { uid?: string; type?: string };
}

interface Panel {
  type: string;
  title: string;
  datasource?: { uid?: string; type?: string };
  targets?: Target[];
  panels?: Panel[];
}

export interface Dashboard {
  file: string;
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; query: string | { query: string } }[] };
}

/** One PromQL expression of a panel. */
export interface PanelQuery {
  dashboard: string;
  panel: string;
  expr: string;
  datasourceUid: string | undefined;
}

export function loadDashboards(dir = DASHBOARD_DIR): Dashboard[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((file) => ({
      ...(JSON.parse(readFileSync(dir + file, 'utf8')) as Omit<Dashboard, 'file'>),
      file,
    }));
}

/** Every panel with its queries, rows' nested panels included. */
export function panelQueries(d: Dashboard): PanelQuery[] {
  const out: PanelQuery[] = [];
  const visit = (panels: Panel[]): void => {
    for (const p of panels) {
      if (p.panels) visit(p.panels);
      for (const t of p.targets ?? []) {
        if (t.expr === undefined) continue;
        out.push({
          dashboard: d.title,
          panel: p.title,
          expr: t.expr,
          datasourceUid: t.datasource?.uid ?? p.datasource?.uid,
        });
      }
    }
  };
  visit(d.panels);
  return out;
}

/** The variables of a dashboard: name and query (`label_values(metric, label)`). */
export function variables(d: Dashboard): { name: string; query: string }[] {
  return d.templating.list.map((v) => ({
    name: v.name,
    query: typeof v.query === 'string' ? v.query : v.query.query,
  }));
}

/** `label_values(metric{...}, label)` as its metric selector and label. */
export function parseLabelValues(query: string): { selector: string; label: string } {
  const m = /^label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\)$/.exec(query.trim());
  if (!m) throw new Error(`not a label_values(metric, label) query: ${query}`);
  return { selector: m[1]!.trim(), label: m[2]! };
}

const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
const KEYWORDS_ALONE = new Set(['bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan']);

/**
 * The metric names a PromQL expression selects: identifiers that are neither functions (followed
 * by a parenthesis), keywords, label names (inside braces or by/without/on/ignoring lists),
 * durations, numbers nor dashboard variables.
 */
export function metricNames(expr: string): string[] {
  let s = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  s = s.replace(/\{[^}]*\}/g, ' ');
  s = s.replace(/\[[^\]]*\]/g, ' ');
  s = s.replace(/\$\{?[A-Za-z_][A-Za-z0-9_]*\}?/g, ' ');
  s = s.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const out = new Set<string>();
  for (const m of s.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const name = m[0];
    const before = s[m.index - 1] ?? ' ';
    if (/[0-9.]/.test(before)) continue; // the exponent of a number
    if (/^\s*\(/.test(s.slice(m.index + name.length))) continue; // a function
    if (KEYWORDS.has(name) || KEYWORDS_ALONE.has(name.toLowerCase())) continue;
    out.add(name);
  }
  return [...out];
}

/** Replaces `$name` and `${name}` by the values given. @throws for a variable without one */
export function substitute(expr: string, values: Readonly<Record<string, string>>): string {
  return expr.replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (whole, name: string) => {
    const v = values[name];
    if (v === undefined) throw new Error(`no value for the dashboard variable ${whole} in ${expr}`);
    return v;
  });
}
