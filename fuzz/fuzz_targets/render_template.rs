//! Template rendering with hostile templates and parameters: never panics, stays within the
//! output limit, and never lets a secret placeholder through that `secret()` did not make.
//!
//! Input: template text, a NUL byte, then the parameters (a JSON object, or else one string
//! parameter `p` holding the bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vrouter_operator::render::{Limits, RenderContext, Renderer, TemplateSource, placeholders};

const LIMITS: Limits = Limits { max_output_bytes: 64 << 10, fuel: 200_000, max_template_bytes: 16 << 10 };

/// A fixed template that walks every parameter, so hostile values are always rendered.
const WALKER: &str = "{% for k, v in params|items %}{{ k }}={{ v }}\n{% endfor %}{{ params }}";

fuzz_target!(|data: &[u8]| {
    let (template, params) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(template) = std::str::from_utf8(template) else { return };
    let params = match serde_json::from_slice::<serde_json::Value>(params) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => {
            let mut map = serde_json::Map::new();
            map.insert("p".into(), String::from_utf8_lossy(params).into_owned().into());
            map
        }
    };
    let ctx = RenderContext { params, ..RenderContext::default() };
    let sources = [
        TemplateSource { name: "fuzz".into(), config: Some(template.to_owned()), commands: None },
        TemplateSource { name: "walker".into(), config: Some(WALKER.into()), commands: Some(template.to_owned()) },
    ];
    let Ok(renderer) = Renderer::new(&sources, LIMITS) else { return };
    for name in ["fuzz", "walker"] {
        let Ok(rendered) = renderer.render(name, &ctx) else { continue };
        for text in [rendered.config.as_deref(), rendered.commands.as_deref()].into_iter().flatten() {
            assert!(text.len() <= LIMITS.max_output_bytes, "output over the limit: {}", text.len());
            let found = placeholders(text);
            assert!(found.is_subset(&rendered.secrets), "unrecorded placeholder in {text:?}");
            if !template.contains("secret") {
                assert!(found.is_empty(), "placeholder without secret(): {text:?}");
            }
        }
    }
});
