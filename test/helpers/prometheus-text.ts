/** One sample of a Prometheus text exposition. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A scrape of `/metrics`, parsed. */
export interface Scrape {
  text: string;
  samples: Sample[];
  /** Sum of the samples named `name` whose labels include `labels`; undefined if there are none. */
  value(name: string, labels?: Record<string, string>): number | undefined;
}

/** Parses the Prometheus text format (enough of it for tests: no escapes in label values beyond \\" and \\\\). */
export function parsePrometheusText(text: string): Scrape {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, "$1");
    }
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return {
    text,
    samples,
    value(name, want = {}) {
      const matching = samples.filter((s) => s.name === name && Object.entries(want).every(([k, v]) => s.labels[k] === v));
      return matching.length === 0 ? undefined : matching.reduce((sum, s) => sum + s.value, 0);
    },
  };
}

/** GETs `${baseUrl}/metrics` over HTTP/1.1 and parses it; fails unless 200 with the Prometheus content type. */
export async function scrapeMetrics(baseUrl: string): Promise<Scrape> {
  const res = await fetch(`${baseUrl}/metrics`);
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}: ${text.slice(0, 200)}`);
  const type = res.headers.get("content-type") ?? "";
  if (!type.startsWith("text/plain; version=0.0.4")) throw new Error(`unexpected content type ${type}`);
  return parsePrometheusText(text);
}
