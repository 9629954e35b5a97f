//! The rules file's shape, as serde reads it and schemars describes it.
//! Every table refuses keys it does not know.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::borrow::Cow;

use schemars::{Schema, SchemaGenerator, json_schema};
use toml::Spanned;
use traffik_core::Rate;

/// A whole rules file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "traffik rules")]
pub(crate) struct RulesFile {
    /// The file format's version (default 1, the only one so far). A file
    /// of a version this traffik does not know is refused rather than read
    /// wrongly.
    #[serde(default)]
    pub(crate) version: Option<At<u32>>,
    /// Stores, by name: a URL such as `memory://`, `redis://host:6379/0`,
    /// `redis+cluster://a:7000,b:7001` or `memcached://host:11211`. Without
    /// this table there is one, `memory`, at `memory://`.
    #[serde(default)]
    pub(crate) backends: BTreeMap<String, At<String>>,
    /// Named limits.
    #[serde(default)]
    pub(crate) throttles: BTreeMap<String, ThrottleSpec>,
    /// Who a client is, for every rule that names no other identity.
    #[serde(default)]
    pub(crate) identity: IdentitySpec,
    /// More identities, by name, for rules that name them.
    #[serde(default)]
    pub(crate) identities: BTreeMap<String, IdentitySpec>,
    /// Clients that are never throttled.
    #[serde(default)]
    pub(crate) exempt: ExemptSpec,
    /// How the layer runs its rules.
    #[serde(default)]
    pub(crate) layer: LayerSpec,
    /// The rules, run in the order written (see `layer.order`).
    #[serde(default)]
    pub(crate) rules: Vec<RuleSpec>,
}

/// A throttle: a named limit on a backend.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Throttle")]
pub(crate) struct ThrottleSpec {
    /// How many hits per period: `"100/min"`, `"10/500ms"`, `"5 per 15 minutes"`.
    pub(crate) rate: At<RateText>,
    /// `gcra` (default), `fixed_window`, `sliding_window_counter`,
    /// `sliding_window_log`, `token_bucket` or `leaky_bucket`.
    #[serde(default)]
    pub(crate) strategy: Option<At<StrategyName>>,
    /// The burst of a bucket strategy (default: the rate's count).
    #[serde(default)]
    pub(crate) burst: Option<At<u64>>,
    /// What a request costs under this throttle, unless its rule says
    /// otherwise (default 1).
    #[serde(default)]
    pub(crate) cost: Option<At<u64>>,
    /// The backend's name in `[backends]` (default: the only one).
    #[serde(default)]
    pub(crate) backend: Option<At<String>>,
    /// What a decision does when its store cannot answer: `allow`
    /// (default), `deny`, `error` or `fallback` (an in-memory limiter of
    /// this instance's share).
    #[serde(default)]
    pub(crate) failure_policy: FailurePolicySpec,
    /// With `failure_policy = "fallback"`: how many instances share the
    /// limit; each enforces `1 / fallback_instances` of it while the store
    /// is out (default 1: the whole limit).
    #[serde(default)]
    pub(crate) fallback_instances: Option<At<u32>>,
    /// Decide and count, but deny nothing (`true`), or deny for this share
    /// of identities only, chosen by a stable hash (`"25%"`).
    #[serde(default)]
    pub(crate) shadow: Option<ShadowSpec>,
    /// The keys' namespace (default `traffik`).
    #[serde(default)]
    pub(crate) namespace: Option<At<String>>,
    /// Escalating blocks for keys that breach the limit.
    #[serde(default)]
    pub(crate) penalty: Option<PenaltySpec>,
}

/// A strategy's name, checked as it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StrategyName(pub(crate) traffik_core::StrategyKind);

impl<'de> Deserialize<'de> for StrategyName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse::<traffik_core::AnyStrategy>()
            .map(|strategy| StrategyName(strategy.kind()))
            .map_err(de::Error::custom)
    }
}

/// `allow`, `deny`, `error` or `fallback`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "FailurePolicy")]
pub(crate) enum FailurePolicySpec {
    /// Admit, and count the failure.
    #[default]
    Allow,
    /// Deny, with the failure status.
    Deny,
    /// Answer 503.
    Error,
    /// Decide on an in-memory limiter of this instance's share, and charge
    /// the store with what it admitted when the store answers again.
    Fallback,
}

/// `true`/`false`, or the share of identities enforced: `"25%"`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ShadowSpec {
    /// Shadow for everyone (`true`) or no one (`false`).
    All(bool),
    /// Enforce for this percentage of identities, shadow for the rest.
    Enforced(String),
}

impl ShadowSpec {
    /// The share enforced, in percent.
    pub(crate) fn enforced_percent(&self) -> f64 {
        match self {
            ShadowSpec::All(true) => 0.0,
            ShadowSpec::All(false) => 100.0,
            ShadowSpec::Enforced(text) => {
                text.trim_end_matches('%').parse::<f64>().unwrap_or(100.0)
            }
        }
    }
}

impl<'de> Deserialize<'de> for ShadowSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Shadow;
        impl de::Visitor<'_> for Shadow {
            type Value = ShadowSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or the share enforced such as \"25%\"")
            }
            fn visit_bool<E: de::Error>(self, value: bool) -> Result<ShadowSpec, E> {
                Ok(ShadowSpec::All(value))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<ShadowSpec, E> {
                let number = value
                    .strip_suffix('%')
                    .and_then(|n| n.trim().parse::<f64>().ok());
                match number {
                    Some(percent) if (0.0..=100.0).contains(&percent) => {
                        Ok(ShadowSpec::Enforced(value.to_owned()))
                    }
                    _ => Err(E::custom(format!(
                        "{:?} is not a share enforced from \"0%\" to \"100%\"",
                        traffik_core::backend::key_prefix(value)
                    ))),
                }
            }
        }
        deserializer.deserialize_any(Shadow)
    }
}

/// A duration in humantime's words: `"90s"`, `"15m"`, `"1h 30m"`, `"2days"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HumanDuration(pub(crate) Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text)
            .map(HumanDuration)
            .map_err(|error| {
                de::Error::custom(format!(
                    "{:?} is not a duration such as \"90s\", \"15m\" or \"1h 30m\": {error}",
                    traffik_core::backend::key_prefix(&text)
                ))
            })
    }
}

/// Escalating blocks.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Penalty")]
pub(crate) struct PenaltySpec {
    /// The block of each offence, in order; offences past the last get the
    /// last: `["15m", "1h", "1d"]`.
    pub(crate) steps: At<Vec<HumanDuration>>,
    /// How long without an offence forgives one (default `"1d"`).
    #[serde(default)]
    pub(crate) forgive_after: Option<At<HumanDuration>>,
}

/// Where the client's identity comes from.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Identity")]
pub(crate) struct IdentitySpec {
    /// `peer` (the TCP peer, default), a proxy header (`x-forwarded-for`,
    /// `forwarded`, `x-real-ip`, `cf-connecting-ip`, `true-client-ip`,
    /// `fly-client-ip`, `cloudfront-viewer-address`), or `header` (the
    /// value of the header `header`, such as an API key).
    #[serde(default)]
    pub(crate) source: Option<At<String>>,
    /// For a proxy header: the networks of the proxies trusted to set it.
    #[serde(default)]
    pub(crate) trusted_proxies: Option<At<Vec<String>>>,
    /// For `source = "header"`: the header's name.
    #[serde(default)]
    pub(crate) header: Option<At<String>>,
    /// IPv6 addresses are grouped by this prefix (default 64).
    #[serde(default)]
    pub(crate) ipv6_prefix: Option<At<u8>>,
}

/// Clients that are never throttled (no backend call at all).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Exempt")]
pub(crate) struct ExemptSpec {
    /// Networks or addresses, matched against the client's address (for a
    /// header identity, the TCP peer's).
    #[serde(default)]
    pub(crate) cidrs: At<Vec<String>>,
    /// Header values, compared exactly (and in constant time).
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, At<String>>,
}

/// How the layer runs its rules.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Layer")]
pub(crate) struct LayerSpec {
    /// `as_written` (default) or `cheap_first` (in-memory before remote,
    /// tighter before looser).
    #[serde(default)]
    pub(crate) order: OrderSpec,
    /// The status of a denial a `deny` failure policy made (default 429).
    #[serde(default)]
    pub(crate) failure_status: Option<At<u16>>,
}

/// The order rules run in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "Order")]
pub(crate) enum OrderSpec {
    /// As written in the file.
    #[default]
    AsWritten,
    /// In-memory first, then tighter limits first.
    CheapFirst,
}

/// One rule: a throttle applied to the requests its filters match.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Rule")]
pub(crate) struct RuleSpec {
    /// The throttle's name in `[throttles]`.
    pub(crate) throttle: At<String>,
    /// An identity's name in `[identities]` (default: `[identity]`).
    #[serde(default)]
    pub(crate) identity: Option<At<String>>,
    /// What keys are made of besides the identity: `route` (default, the
    /// matched route template), `method_route` or `global`.
    #[serde(default)]
    pub(crate) scope: ScopeSpec,
    /// Only these methods (default: all).
    #[serde(default)]
    pub(crate) methods: Option<At<Vec<String>>>,
    /// Only paths matching one of these globs: `*` within a segment, `**`
    /// across segments (default: all).
    #[serde(default)]
    pub(crate) paths: Option<At<Vec<String>>>,
    /// Only requests whose headers have these values (`"*"`: present).
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, At<String>>,
    /// What a request costs (default: the throttle's cost, or 1).
    #[serde(default)]
    pub(crate) cost: Option<At<u64>>,
    /// Count only some responses.
    #[serde(default)]
    pub(crate) count: Option<CountSpec>,
    /// Limits for listed identities (such as API keys), overriding the
    /// throttle's: `{ "key-of-acme" = "1000/min" }`.
    #[serde(default)]
    pub(crate) limits: BTreeMap<String, At<String>>,
}

/// What keys are made of besides the identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "Scope")]
pub(crate) enum ScopeSpec {
    /// The identity and the matched route template.
    #[default]
    Route,
    /// The identity, the method and the route template.
    MethodRoute,
    /// The identity alone.
    Global,
}

/// Which responses count.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Count")]
pub(crate) struct CountSpec {
    /// Statuses that count: codes (`401`) or classes (`"5xx"`).
    pub(crate) statuses: At<Vec<StatusSpec>>,
    /// `reserve` (default: charge on arrival, refund uncounted responses;
    /// exact) or `check_then_charge` (charge counted responses after them;
    /// concurrent requests can pass together).
    #[serde(default)]
    pub(crate) settle: SettleSpec,
}

/// A status code or class.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "Status")]
pub(crate) enum StatusSpec {
    /// One code, such as 401.
    Code(u16),
    /// A class, such as "4xx".
    Class(String),
}

/// When a response-counted rule charges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "Settle")]
pub(crate) enum SettleSpec {
    /// Reserve on arrival, refund when the response does not count.
    #[default]
    Reserve,
    /// Check on arrival, charge when the response counts.
    CheckThenCharge,
}

/// A value with where it is in the file, for errors that point at it.
#[derive(Debug, Clone)]
pub(crate) struct At<T>(pub(crate) Spanned<T>);

impl<T> At<T> {
    pub(crate) fn get(&self) -> &T {
        self.0.get_ref()
    }

    pub(crate) fn span(&self) -> std::ops::Range<usize> {
        self.0.span()
    }
}

impl<T: Default> Default for At<T> {
    fn default() -> Self {
        At(Spanned::new(0..0, T::default()))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for At<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Spanned::<T>::deserialize(deserializer).map(At)
    }
}

impl<T: JsonSchema> JsonSchema for At<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// A rate in traffik's grammar, checked as it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateText(pub(crate) Rate);

impl<'de> Deserialize<'de> for RateText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse::<Rate>().map(RateText).map_err(|error| {
            de::Error::custom(format!(
                "{:?} is not a rate: {error}",
                traffik_core::backend::key_prefix(&text)
            ))
        })
    }
}

/// A string schema with a description and an example.
fn text_schema(description: &str, example: &str) -> Schema {
    json_schema!({
        "type": "string",
        "description": description,
        "examples": [example],
    })
}

impl JsonSchema for RateText {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Rate".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        text_schema(
            "hits per period: \"100/min\", \"10/500ms\", \"5 per 15 minutes\"",
            "100/min",
        )
    }
}

impl JsonSchema for StrategyName {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Strategy".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let names: Vec<&str> = traffik_core::StrategyKind::ALL
            .iter()
            .map(|kind| kind.as_str())
            .collect();
        json_schema!({ "type": "string", "enum": names })
    }
}

impl JsonSchema for HumanDuration {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        text_schema("a duration: \"90s\", \"15m\", \"1h 30m\", \"2days\"", "15m")
    }
}

impl JsonSchema for ShadowSpec {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Shadow".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "boolean" },
                { "type": "string", "pattern": "^[0-9]{1,3}(\\.[0-9]+)?%$" }
            ]
        })
    }
}
