//! The page's accessibility check for the browser tests: [`check_accessibility`] injects
//! axe-core (from the npm registry; `scripts/setup.sh` installs the pinned version) into the
//! page through WebDriver, runs `axe.run()` on what the page shows at that moment, and fails
//! on any `serious` or `critical` violation, listing each (rule id, impact, help, and the CSS
//! targets of the offending nodes). Lesser findings are printed, not failed.
//!
//! axe accepts an `aria-label` or a `placeholder`-less `title` as a control's name; the page
//! promises more, a *visible* label on every control. The same call checks that too (rule
//! `visible-label`, counted as serious): every button shows text, and every input, select and
//! textarea has a `<label>` (wrapping it or `for` it) whose text is rendered.
//!
//! axe.min.js is found at `$PP_AXE_JS`, else where `scripts/setup.sh` puts it:
//! `$XDG_DATA_HOME/peer-pressure/axe/axe.min.js` (XDG_DATA_HOME defaulting to `~/.local/share`).

use crate::Browser;
use anyhow::{bail, Context};
use std::path::PathBuf;

/// Where axe.min.js is read from (see the module doc).
pub fn axe_js_path() -> PathBuf {
    if let Some(p) = std::env::var_os("PP_AXE_JS").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    crate::tools_dir().unwrap_or_default().join("axe/axe.min.js")
}

/// Runs axe and the visible-label check; resolves to a JSON string `[{id, impact, help,
/// nodes: [{target, summary}]}]` of every finding.
const RUN: &str = r#"
const done = arguments[arguments.length - 1];
const visible = (el) => !!el && el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
const text = (el) => (el.innerText || '').trim();
const path = (el) => el.id ? '#' + el.id : el.tagName.toLowerCase() + (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\s+/).join('.') : '');
const unlabelled = [];
for (const el of document.querySelectorAll('button, input, select, textarea')) {
  if (el.type === 'hidden') continue;
  // A control nobody can see (and no label of it shows either) is not offered to the user.
  const labels = Array.from(el.labels || []);
  if (!visible(el) && !labels.some(visible)) continue;
  const ok = el.tagName === 'BUTTON' || el.type === 'submit' || el.type === 'button'
    ? text(el) !== '' || (el.value || '').trim() !== '' || labels.some((l) => visible(l) && text(l) !== '')
    : labels.some((l) => visible(l) && text(l) !== '');
  if (!ok) unlabelled.push({ target: [path(el)], summary: 'no visible label: a <label> with rendered text (or text on the button)' });
}
const found = unlabelled.length ? [{ id: 'visible-label', impact: 'serious', help: 'Every control has a visible label', nodes: unlabelled }] : [];
axe.run(document, { resultTypes: ['violations'] })
  .then((r) => done(JSON.stringify(found.concat(r.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map((n) => ({ target: n.target, summary: n.failureSummary })),
  }))))))
  .catch((e) => done(JSON.stringify({ error: String(e) })));
"#;

/// Checks the page as it is now (`view` names it in messages): no `serious` or `critical`
/// axe violation, and a visible label on every control (see the module doc).
pub async fn check_accessibility(browser: &Browser, view: &str) -> anyhow::Result<()> {
    let c = &browser.client;
    let loaded = c.execute("return typeof window.axe === 'object';", vec![]).await?;
    if loaded != serde_json::Value::Bool(true) {
        let path = axe_js_path();
        let js = std::fs::read_to_string(&path).with_context(|| {
            format!("cannot read axe-core at {} (scripts/setup.sh installs it; or set PP_AXE_JS)", path.display())
        })?;
        c.execute(&js, vec![]).await.context("injecting axe-core")?;
    }
    let answer = c.execute_async(RUN, vec![]).await.with_context(|| format!("axe.run() on the {view} view"))?;
    let text = answer.as_str().context("axe.run() answered no JSON string")?;
    let found: serde_json::Value = serde_json::from_str(text)?;
    if let Some(e) = found.get("error") {
        bail!("axe.run() failed on the {view} view: {e}");
    }
    let found = found.as_array().context("axe findings are a list")?;
    let (bad, minor): (Vec<_>, Vec<_>) =
        found.iter().partition(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")));
    if !minor.is_empty() {
        eprintln!("accessibility, {view} view: {} lesser finding(s):\n{}", minor.len(), describe(&minor));
    }
    if !bad.is_empty() {
        bail!("accessibility, {view} view: {} serious or critical violation(s):\n{}", bad.len(), describe(&bad));
    }
    Ok(())
}

/// One line per finding, one indented line per node.
fn describe(found: &[&serde_json::Value]) -> String {
    let mut out = String::new();
    for v in found {
        out += &format!(
            "- {} ({}): {}\n",
            v["id"].as_str().unwrap_or("?"),
            v["impact"].as_str().unwrap_or("?"),
            v["help"]
        );
        for n in v["nodes"].as_array().into_iter().flatten() {
            out += &format!("    {} : {}\n", n["target"], n["summary"].as_str().unwrap_or("").replace('\n', " "));
        }
    }
    out
}
