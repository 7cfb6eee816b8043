//! Template rendering: VRouterTemplate `config`/`commands` text + parameters → rendered text.
//!
//! Pure: no I/O, no Kubernetes, no async. A [`Renderer`] compiles a set of templates once (every
//! syntax error of every template is reported together) and renders any of them against a
//! [`RenderContext`]. The template language is minijinja (Jinja2) with:
//!
//! - strict undefined values: a missing parameter is an error naming the template, field, line and
//!   expression ([`RenderError::Undefined`]), never an empty string;
//! - the context: every parameter as a variable, plus `params` (the whole map), `target` and
//!   `binding` ([`ObjectInfo`]; `binding` is `none` for a hand-written VRouterConfig). The reserved
//!   names win over parameters of the same name, which stay reachable as `params["target"]`;
//! - includes and imports by VRouterTemplate name, resolving to the same field
//!   (`{% include "common" %}` in `config` is `common`'s `config`), or to an explicit one
//!   (`"common/commands"`);
//! - network helpers (`address`, `host`, `subnet`, ...; see `docs/templates.md`) and `secret(name, key)`
//!   ([`secrets`]);
//! - every `{{ }}` output is exactly one VyOS value, quoted as VyOS quotes it, never syntax
//!   (`quoting`); the `raw_syntax` filter prints syntax on purpose and is reported
//!   ([`Renderer::raw_syntax_uses`]);
//! - the predecessor's Go `{{ .path }}` expressions ([`compat`]);
//! - limits on source size, output size and evaluation work ([`Limits`]).
//!
//! Parameter layers are merged with [`merge_params`]. User documentation: `docs/templates.md`.

pub mod compat;
mod net;
pub mod params;
mod quoting;
pub mod secrets;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;

use minijinja::value::{Serde, Value};
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use serde::Serialize;

pub use params::merge_params;
pub use secrets::{InvalidSecretRef, MissingSecret, Redactor, SecretRef, SubstituteError, placeholders, substitute};

use secrets::UsedSecrets;

/// minijinja's nesting budget: an include or import costs 10, a macro call 4, a loop 1. Well below
/// minijinja's default (500) so that a self-including or endlessly recursive template fails with an
/// error long before a thread's stack runs out: at 100 the worst case we found needs less than
/// 512 KiB in a debug build, a quarter of a tokio worker's 2 MiB (at 200 it overflowed 512 KiB).
const RECURSION_LIMIT: usize = 100;

/// One VRouterTemplate: its name and its two optional template texts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateSource {
    /// The VRouterTemplate's name; includes and imports refer to it.
    pub name: String,
    /// `spec.config`: a VyOS hierarchical configuration fragment.
    pub config: Option<String>,
    /// `spec.commands`: VyOS configuration commands (`set`/`delete`/`comment`).
    pub commands: Option<String>,
}

impl TemplateSource {
    /// The text of one field, if present.
    pub fn get(&self, field: Field) -> Option<&str> {
        match field {
            Field::Config => self.config.as_deref(),
            Field::Commands => self.commands.as_deref(),
        }
    }
}

/// One of the two template fields of a VRouterTemplate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Field {
    /// `spec.config`.
    Config,
    /// `spec.commands`.
    Commands,
}

impl Field {
    /// Both fields, in rendering order.
    pub const ALL: [Field; 2] = [Field::Config, Field::Commands];

    /// `"config"` or `"commands"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Config => "config",
            Field::Commands => "commands",
        }
    }

    fn parse(s: &str) -> Option<Field> {
        match s {
            "config" => Some(Field::Config),
            "commands" => Some(Field::Commands),
            _ => None,
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What templates see of a Kubernetes object (`target`, `binding`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ObjectInfo {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
}

/// Everything one render sees.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RenderContext {
    /// The merged parameters (see [`merge_params`]).
    pub params: serde_json::Map<String, serde_json::Value>,
    /// The VRouterTarget rendered for.
    pub target: ObjectInfo,
    /// The VRouterBinding rendering, if any.
    pub binding: Option<ObjectInfo>,
}

/// The result of rendering one template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    /// The rendered `config`, if the template has one.
    pub config: Option<String>,
    /// The rendered `commands`, if the template has them.
    pub commands: Option<String>,
    /// The secrets whose placeholders the output contains (all made by `secret()`).
    pub secrets: BTreeSet<SecretRef>,
}

impl Rendered {
    /// The rendered text of one field, if present.
    pub fn get(&self, field: Field) -> Option<&str> {
        match field {
            Field::Config => self.config.as_deref(),
            Field::Commands => self.commands.as_deref(),
        }
    }
}

/// Bounds on what a template may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest rendered text of one field, in bytes. Default 1 MiB.
    pub max_output_bytes: usize,
    /// Evaluation budget of one field's render (minijinja fuel: roughly one unit per instruction).
    /// Default 5,000,000, far above what real router configurations need.
    pub fuel: u64,
    /// Largest template text of one field, in bytes. Default 256 KiB.
    pub max_template_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_output_bytes: 1 << 20, fuel: 5_000_000, max_template_bytes: 256 << 10 }
    }
}

/// Why compiling or rendering failed. Every message names the template, the field and (where
/// known) the line, e.g. `template "bgp" (config) line 7: undefined value "asn"`. For errors in an
/// included or imported template, these are the included template's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// No template of that name was given to [`Renderer::new`].
    #[error("unknown template {name:?}")]
    UnknownTemplate {
        /// The name asked for.
        name: String,
    },
    /// A template name that cannot be used (empty, or containing `/`).
    #[error("invalid template name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two templates with the same name.
    #[error("template {name:?} is given more than once")]
    DuplicateTemplate {
        /// The name.
        name: String,
    },
    /// The template text does not compile.
    #[error("template {template:?} ({field}){}: {message}", at(*.line))]
    Syntax {
        /// The template.
        template: String,
        /// The field.
        field: Field,
        /// The line, if known.
        line: Option<usize>,
        /// minijinja's description.
        message: String,
    },
    /// The template used a value that is not defined (strict undefined).
    #[error("template {template:?} ({field}){}: undefined value {expression:?}", at(*.line))]
    Undefined {
        /// The template.
        template: String,
        /// The field.
        field: Field,
        /// The line, if known.
        line: Option<usize>,
        /// The undefined expression, e.g. `asn` or `bgp.neighbors`.
        expression: String,
    },
    /// Any other error while rendering (a helper's bad input, a failed include, a type error).
    #[error("template {template:?} ({field}){}: {message}", at(*.line))]
    Eval {
        /// The template.
        template: String,
        /// The field.
        field: Field,
        /// The line, if known.
        line: Option<usize>,
        /// What went wrong.
        message: String,
    },
    /// The template text is larger than [`Limits::max_template_bytes`].
    #[error("template {template:?} ({field}): the text is {size} bytes, more than the limit of {limit} bytes")]
    SourceTooLarge {
        /// The template.
        template: String,
        /// The field.
        field: Field,
        /// The text's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The rendered text would be larger than [`Limits::max_output_bytes`].
    #[error("template {template:?} ({field}): the rendered text exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The template.
        template: String,
        /// The field.
        field: Field,
        /// The limit.
        limit: usize,
    },
    /// Rendering used up its evaluation budget ([`Limits::fuel`]).
    #[error(
        "template {template:?} ({field}): rendering used up its evaluation budget (fuel); look for a loop that runs far too often"
    )]
    FuelExhausted {
        /// The template.
        template: String,
        /// The field.
        field: Field,
    },
    /// The output holds a secret placeholder that no `secret()` call of this render produced (for
    /// example one smuggled in through a parameter); it would otherwise receive the secret's value.
    #[error(
        "template {template:?} ({field}): the output contains a placeholder for secret {secret:?} that no secret() call produced; secrets can only be referenced with secret()",
        secret = secret.to_string()
    )]
    ForeignPlaceholder {
        /// The rendered template.
        template: String,
        /// The field.
        field: Field,
        /// The secret the placeholder names.
        secret: SecretRef,
    },
    /// A printed value cannot be placed as one VyOS word where it stands (it would be the
    /// command word, or end a `/* comment */`), or the rendered text around it cannot be read
    /// with VyOS's lexer. `line` is the line of the rendered text.
    #[error("template {template:?} ({field}) rendered line {line}: {message}")]
    Quoting {
        /// The rendered template.
        template: String,
        /// The field.
        field: Field,
        /// The line of the rendered text.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A bug or an impossible state inside the renderer.
    #[error("internal rendering error: {message}")]
    Internal {
        /// What happened.
        message: String,
    },
}

fn at(line: Option<usize>) -> String {
    line.map(|l| format!(" line {l}")).unwrap_or_default()
}

impl RenderError {
    /// The template the error is about, if it is about one.
    pub fn template(&self) -> Option<&str> {
        match self {
            RenderError::UnknownTemplate { name }
            | RenderError::InvalidName { name, .. }
            | RenderError::DuplicateTemplate { name } => Some(name),
            RenderError::Syntax { template, .. }
            | RenderError::Undefined { template, .. }
            | RenderError::Eval { template, .. }
            | RenderError::SourceTooLarge { template, .. }
            | RenderError::TooLarge { template, .. }
            | RenderError::FuelExhausted { template, .. }
            | RenderError::Quoting { template, .. }
            | RenderError::ForeignPlaceholder { template, .. } => Some(template),
            RenderError::Internal { .. } => None,
        }
    }

    /// The field the error is about, if it is about one.
    pub fn field(&self) -> Option<Field> {
        match self {
            RenderError::Syntax { field, .. }
            | RenderError::Undefined { field, .. }
            | RenderError::Eval { field, .. }
            | RenderError::SourceTooLarge { field, .. }
            | RenderError::TooLarge { field, .. }
            | RenderError::FuelExhausted { field, .. }
            | RenderError::Quoting { field, .. }
            | RenderError::ForeignPlaceholder { field, .. } => Some(*field),
            RenderError::UnknownTemplate { .. }
            | RenderError::InvalidName { .. }
            | RenderError::DuplicateTemplate { .. }
            | RenderError::Internal { .. } => None,
        }
    }

    /// The line of the template the error is about, if known ([`RenderError::Quoting`] names a
    /// line of the rendered text instead, in its message).
    pub fn line(&self) -> Option<usize> {
        match self {
            RenderError::Syntax { line, .. } | RenderError::Undefined { line, .. } | RenderError::Eval { line, .. } => {
                *line
            }
            _ => None,
        }
    }
}

/// The compiled templates, ready to render. Cheap to share (`Send + Sync`); rendering does not
/// mutate it.
#[derive(Debug, Clone)]
pub struct Renderer {
    env: Environment<'static>,
    /// Template name → which fields it has.
    fields: BTreeMap<String, BTreeSet<Field>>,
    limits: Limits,
    raw_syntax_uses: Vec<RawSyntaxUse>,
}

/// A use of the `raw_syntax` filter in a template's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSyntaxUse {
    /// The template.
    pub template: String,
    /// The field.
    pub field: Field,
    /// The 1-based line.
    pub line: usize,
}

impl fmt::Display for RawSyntaxUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "template {:?} ({}) line {}: raw_syntax prints a value as VyOS syntax, unquoted; whoever writes \
             that value can write any configuration",
            self.template, self.field, self.line
        )
    }
}

/// The `raw_syntax` uses in one template's texts, without compiling it (see
/// [`Renderer::raw_syntax_uses`]).
pub fn raw_syntax_uses(template: &TemplateSource) -> Vec<RawSyntaxUse> {
    Field::ALL
        .into_iter()
        .filter_map(|field| template.get(field).map(|source| (field, source)))
        .flat_map(|(field, source)| {
            quoting::raw_syntax_lines(source).into_iter().map(move |line| RawSyntaxUse {
                template: template.name.clone(),
                field,
                line,
            })
        })
        .collect()
}

/// The name a template field is registered under in the environment: `"<template>/<field>"`.
fn env_name(template: &str, field: Field) -> String {
    format!("{template}/{field}")
}

/// Splits an environment name back into template and field.
fn split_env_name(name: &str) -> Option<(&str, Field)> {
    let (template, field) = name.rsplit_once('/')?;
    Some((template, Field::parse(field)?))
}

/// Resolves an include/import name relative to the including template: a bare name gets the
/// including template's field, `name/field` is taken as it is.
fn join_path<'s>(name: &'s str, parent: &'s str) -> Cow<'s, str> {
    if name.contains('/') {
        return Cow::Borrowed(name);
    }
    match split_env_name(parent) {
        Some((_, field)) => Cow::Owned(env_name(name, field)),
        None => Cow::Borrowed(name),
    }
}

impl Renderer {
    /// Compiles every field of every template. All problems are reported together: invalid or
    /// duplicate names, texts over [`Limits::max_template_bytes`], syntax errors (with line).
    pub fn new(templates: &[TemplateSource], limits: Limits) -> Result<Renderer, Vec<RenderError>> {
        let mut errors = Vec::new();
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // A custom auto-escape mode makes minijinja treat output (macro results, `{% set %}`
        // blocks) as safe and send every other printed value through the formatter, which turns
        // it into a value marker (see `quoting`).
        env.set_auto_escape_callback(|_| AutoEscape::Custom("vyos".into()));
        // Debug mode makes undefined-value errors name the expression.
        env.set_debug(true);
        env.set_fuel(Some(limits.fuel));
        env.set_recursion_limit(RECURSION_LIMIT);
        match minijinja::syntax::SyntaxConfig::builder().keep_trailing_newline(true).build() {
            Ok(syntax) => env.set_syntax(syntax),
            Err(err) => errors.push(RenderError::Internal { message: format!("syntax configuration: {err}") }),
        }
        env.set_formatter(quoting::formatter(limits.max_output_bytes));
        env.add_filter("raw_syntax", quoting::raw_syntax_filter);
        env.add_filter("safe", quoting::safe_filter);
        env.set_path_join_callback(join_path);
        net::register(&mut env);
        env.add_function("secret", secrets::secret_function);

        let mut fields: BTreeMap<String, BTreeSet<Field>> = BTreeMap::new();
        let mut raw_syntax_uses = Vec::new();
        for template in templates {
            let name = &template.name;
            if name.is_empty() {
                errors.push(RenderError::InvalidName { name: name.clone(), reason: "the name is empty" });
                continue;
            }
            if name.contains('/') {
                errors.push(RenderError::InvalidName { name: name.clone(), reason: "the name contains '/'" });
                continue;
            }
            if fields.contains_key(name) {
                errors.push(RenderError::DuplicateTemplate { name: name.clone() });
                continue;
            }
            let present = fields.entry(name.clone()).or_default();
            for field in Field::ALL {
                let Some(source) = template.get(field) else { continue };
                present.insert(field);
                if source.len() > limits.max_template_bytes {
                    errors.push(RenderError::SourceTooLarge {
                        template: name.clone(),
                        field,
                        size: source.len(),
                        limit: limits.max_template_bytes,
                    });
                    continue;
                }
                if let Some((line, c)) = quoting::reserved_in_source(source) {
                    errors.push(RenderError::Syntax {
                        template: name.clone(),
                        field,
                        line: Some(line),
                        message: format!(
                            "the text contains {c:?}, a character vrouter reserves for its value markers \
                             (U+E000 to U+E01F)"
                        ),
                    });
                    continue;
                }
                if let Some((line, tag)) = compat::go_control_tag(source) {
                    errors.push(RenderError::Syntax {
                        template: name.clone(),
                        field,
                        line: Some(line),
                        message: format!(
                            "Go template control structures like `{tag}` are not supported; only plain {{{{ .path }}}} \
                             expressions are accepted for compatibility: write {{% if %}}/{{% for %}} ... \
                             {{% endif %}}/{{% endfor %}} instead (see docs/templates.md)"
                        ),
                    });
                    continue;
                }
                raw_syntax_uses.extend(quoting::raw_syntax_lines(source).into_iter().map(|line| RawSyntaxUse {
                    template: name.clone(),
                    field,
                    line,
                }));
                let compiled = compat::rewrite_go_paths(source).into_owned();
                if let Err(err) = env.add_template_owned(env_name(name, field), compiled) {
                    errors.push(syntax_error(&err, name, field, source));
                }
            }
        }
        if errors.is_empty() { Ok(Renderer { env, fields, limits, raw_syntax_uses }) } else { Err(errors) }
    }

    /// Where the templates use the `raw_syntax` filter, which prints a value as VyOS syntax
    /// instead of one quoted value: worth a warning wherever it appears.
    pub fn raw_syntax_uses(&self) -> &[RawSyntaxUse] {
        &self.raw_syntax_uses
    }

    /// The names of the templates this renderer knows.
    pub fn template_names(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(String::as_str)
    }

    /// The limits this renderer enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Renders every field the template has (those that are `None` stay `None`).
    pub fn render(&self, template_name: &str, ctx: &RenderContext) -> Result<Rendered, RenderError> {
        self.render_prepared(template_name, &PreparedContext::new(ctx))
    }

    /// [`render`](Self::render) with a context prepared once for several templates.
    pub fn render_prepared(&self, template_name: &str, ctx: &PreparedContext) -> Result<Rendered, RenderError> {
        let Some(fields) = self.fields.get(template_name) else {
            return Err(RenderError::UnknownTemplate { name: template_name.to_string() });
        };
        let mut rendered = Rendered::default();
        for &field in fields {
            let (text, secrets) = self.render_field(template_name, field, ctx.0.clone())?;
            rendered.secrets.extend(secrets);
            match field {
                Field::Config => rendered.config = Some(text),
                Field::Commands => rendered.commands = Some(text),
            }
        }
        Ok(rendered)
    }

    fn render_field(
        &self,
        template: &str,
        field: Field,
        root: Value,
    ) -> Result<(String, BTreeSet<SecretRef>), RenderError> {
        let compiled = self
            .env
            .get_template(&env_name(template, field))
            .map_err(|err| RenderError::Internal { message: format!("compiled template missing: {err}") })?;
        let mut out = LimitedWriter { buf: Vec::new(), limit: self.limits.max_output_bytes, exceeded: false };
        let too_large =
            || RenderError::TooLarge { template: template.to_string(), field, limit: self.limits.max_output_bytes };
        let captured = match compiled.render_captured_to(root, &mut out) {
            Ok(captured) => captured,
            Err(_) if out.exceeded => return Err(too_large()),
            Err(err) if innermost(&err).detail() == Some(quoting::VALUES_TOO_LARGE) => return Err(too_large()),
            Err(err) => return Err(self.eval_error(&err, template, field)),
        };
        let state = captured.state();
        let used = state.get_extension::<UsedSecrets>().map(|u| u.0.clone()).unwrap_or_default();
        let text = String::from_utf8(out.buf)
            .map_err(|err| RenderError::Internal { message: format!("rendered text is not UTF-8: {err}") })?;
        let text = quoting::finish(text, field, state.get_extension::<quoting::Values>()).map_err(|problem| {
            RenderError::Quoting { template: template.to_string(), field, line: problem.line, message: problem.message }
        })?;
        if text.len() > self.limits.max_output_bytes {
            return Err(too_large());
        }
        let found = placeholders(&text);
        if let Some(foreign) = found.iter().find(|s| !used.contains(*s)) {
            return Err(RenderError::ForeignPlaceholder {
                template: template.to_string(),
                field,
                secret: foreign.clone(),
            });
        }
        Ok((text, found))
    }

    /// Turns a render error into a [`RenderError`] located in the template that caused it.
    fn eval_error(&self, err: &minijinja::Error, template: &str, field: Field) -> RenderError {
        let err = innermost(err);
        let (template, field) = match err.name().and_then(split_env_name) {
            Some((t, f)) => (t.to_string(), f),
            None => (template.to_string(), field),
        };
        let line = err.line();
        if err.kind() == ErrorKind::OutOfFuel {
            return RenderError::FuelExhausted { template, field };
        }
        if let Some(expression) = undefined_expression(err) {
            return RenderError::Undefined { template, field, line, expression };
        }
        let detail = err.detail().unwrap_or_default();
        let message = match err.kind() {
            ErrorKind::TemplateNotFound => self.not_found_message(detail, field),
            ErrorKind::InvalidOperation if detail == "recursion limit exceeded" => "recursion limit exceeded: \
                 includes, imports, macro calls and loops nested too deep (does a template include itself, or a \
                 macro call itself without end?)"
                .to_string(),
            ErrorKind::InvalidOperation if !detail.is_empty() => detail.to_string(),
            kind if detail.is_empty() => kind.to_string(),
            kind => format!("{kind}: {detail}"),
        };
        RenderError::Eval { template, field, line, message }
    }

    /// Explains a failed include/import in terms of VRouterTemplates.
    fn not_found_message(&self, detail: &str, field: Field) -> String {
        // minijinja's detail quotes the name: `tried to include non-existing template 'x'` or
        // `template "x/config" does not exist`.
        let Some(name) = quoted_name(detail) else { return format!("template not found: {detail}") };
        let (template, wanted) = match split_env_name(name) {
            Some((t, f)) => (t, f),
            None => (name, field),
        };
        if self.fields.contains_key(template) {
            format!("template {template:?} has no {wanted}")
        } else {
            format!("there is no template {template:?} to include or import")
        }
    }
}

/// The single quoted (with `'` or `"`) word in a message, if there is exactly one.
fn quoted_name(detail: &str) -> Option<&str> {
    let start = detail.find(['\'', '"'])?;
    let quote = detail[start..].chars().next()?;
    let rest = &detail[start + 1..];
    let end = rest.find(quote)?;
    if rest[end + 1..].contains(['\'', '"']) {
        return None;
    }
    Some(&rest[..end])
}

/// Follows the chain of include errors to the error that started it.
fn innermost(err: &minijinja::Error) -> &minijinja::Error {
    let mut current = err;
    let mut source = std::error::Error::source(err);
    while let Some(next) = source {
        if let Some(inner) = next.downcast_ref::<minijinja::Error>() {
            current = inner;
        }
        source = next.source();
    }
    current
}

/// If the error is about an undefined value, the expression that was undefined.
fn undefined_expression(err: &minijinja::Error) -> Option<String> {
    let detail = err.detail().unwrap_or_default();
    // minijinja (debug mode) says "`bgp.asn` is undefined" or "... (`x` is undefined)".
    let from_detail = detail.find("` is undefined").and_then(|end| {
        let start = detail[..end].rfind('`')?;
        Some(detail[start + 1..end].to_string())
    });
    if from_detail.is_some() {
        return from_detail;
    }
    if err.kind() != ErrorKind::UndefinedError {
        return None;
    }
    // Fall back to the source text of the failing expression.
    let from_source = err.template_source().zip(err.range()).and_then(|(src, range)| src.get(range));
    Some(from_source.map(|s| s.trim().to_string()).unwrap_or_else(|| "(unknown expression)".to_string()))
}

/// Maps a compile error to [`RenderError::Syntax`], with a hint when the line looks like Go syntax.
fn syntax_error(err: &minijinja::Error, template: &str, field: Field, source: &str) -> RenderError {
    let line = err.line();
    let mut message = match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    };
    let source_line = line.and_then(|l| source.lines().nth(l.saturating_sub(1)));
    if source_line.is_some_and(compat::looks_like_go) {
        message.push_str(
            " (Go template syntax is accepted only for plain {{ .path }} expressions; write the rest in Jinja, \
             see docs/templates.md)",
        );
    }
    RenderError::Syntax { template: template.to_string(), field, line, message }
}

/// A [`RenderContext`] converted to the template engine's values, for rendering several
/// templates against the same context without converting it again.
#[derive(Debug, Clone)]
pub struct PreparedContext(Value);

impl PreparedContext {
    /// Converts `ctx`.
    pub fn new(ctx: &RenderContext) -> PreparedContext {
        PreparedContext(context_value(ctx))
    }
}

/// Builds the template context: parameters as variables, then the reserved names on top.
fn context_value(ctx: &RenderContext) -> Value {
    // Converted once: each variable is the same (shared) value as its entry in `params`.
    let params = Value::from(Serde(&ctx.params));
    let mut map: BTreeMap<String, Value> = ctx
        .params
        .iter()
        .map(|(k, v)| {
            let shared = params.get_attr(k).ok().filter(|x| !x.is_undefined());
            (k.clone(), shared.unwrap_or_else(|| Value::from(Serde(v))))
        })
        .collect();
    map.insert("params".to_string(), params);
    map.insert("target".to_string(), Value::from(Serde(&ctx.target)));
    map.insert("binding".to_string(), ctx.binding.as_ref().map(|b| Value::from(Serde(b))).unwrap_or(Value::from(())));
    Value::from_pairs(map)
}

/// Collects output up to a limit; writing past it fails and sets `exceeded`.
struct LimitedWriter {
    buf: Vec<u8>,
    limit: usize,
    exceeded: bool,
}

impl io::Write for LimitedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > self.limit {
            self.exceeded = true;
            return Err(io::Error::other("rendered output limit exceeded"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod quoting_tests;
#[cfg(test)]
mod tests;
