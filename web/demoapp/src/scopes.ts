// SMART scope checks the app uses to decide whether a view can be shown. The server is the
// authority: a view whose scope was granted may still get a refusal, which the app shows too.

/** What a view needs: a resource type and, for Observations, a category. */
export interface Need {
  type: string;
  category?: string;
}

interface Parsed {
  context: string;
  type: string;
  perms: string;
  constraints: URLSearchParams;
}

function parse(scope: string): Parsed | null {
  const m = /^(patient|user|system)\/([A-Za-z]+|\*)\.([a-z]+|\*)(\?.*)?$/.exec(scope);
  if (!m) return null;
  return { context: m[1], type: m[2], perms: m[3], constraints: new URLSearchParams((m[4] ?? "").slice(1)) };
}

/** canSearch reports whether the scope lets the app search: SMART v2 "s" or v1 "read"/"*". */
function canSearch(perms: string): boolean {
  if (perms === "read" || perms === "*") return true;
  return /^c?r?u?d?s$/.test(perms) && perms.includes("s");
}

/** covers reports whether one of the granted scopes lets the app search what need describes. */
export function covers(granted: string[], need: Need): boolean {
  return granted.some((s) => {
    const p = parse(s);
    if (!p || p.context === "system") return false;
    if (p.type !== "*" && p.type !== need.type) return false;
    if (!canSearch(p.perms)) return false;
    for (const [param, value] of p.constraints) {
      if (param !== "category" || !need.category) return false;
      const code = value.includes("|") ? value.slice(value.indexOf("|") + 1) : value;
      if (code !== need.category) return false;
    }
    return true;
  });
}

/** withheld lists the requested scopes that were not granted. */
export function withheld(requested: string[], granted: string[]): string[] {
  const g = new Set(granted);
  return requested.filter((s) => !g.has(s));
}

/** split turns a space-separated scope string into its scopes. */
export function split(scope: string | undefined): string[] {
  return (scope ?? "").split(/\s+/).filter(Boolean);
}
