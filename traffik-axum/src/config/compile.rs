//! From a parsed rules file to layers: every name resolved, every value
//! checked, each mistake reported at its place in the file.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method, StatusCode};
use ipnet::IpNet;
use traffik_backends::AnyBackend;
use traffik_core::{
    AnyStrategy, Clock, Enforcement, FailurePolicy, Gcra, LeakyBucket, Limit, Lockout, ManualClock,
    Penalty, Rate, StrategyKind, SystemClock, Throttle, TokenBucket,
};

use super::RulesError;
use super::admin::{ThrottleAdmin, Tiers, Use};
use super::identity::{ConfigIdentity, Source};
use super::spec::{
    At, CountSpec, FailurePolicySpec, IdentitySpec, OrderSpec, RuleSpec, RulesFile, ScopeSpec,
    SettleSpec, StatusSpec, ThrottleSpec,
};
use crate::{
    ClientIp, Counting, Filter, HeaderKey, IpSource, KeyScope, PeerIp, Rule, ThrottleLayer,
};

/// What a rules file became: its layers, outermost first, what each
/// throttle is (to tell what a reload changed), and each throttle's handle
/// for an operator.
pub(crate) struct Compiled {
    pub(crate) layers: Vec<ThrottleLayer<ConfigIdentity>>,
    pub(crate) throttles: BTreeMap<String, Summary>,
    pub(crate) admin: BTreeMap<String, ThrottleAdmin>,
}

/// The clock of a rules file's throttles: the system's, or a manual one
/// (to replay a log at its own timestamps).
#[derive(Clone, Debug)]
pub(crate) enum RulesClock {
    System(SystemClock),
    Manual(ManualClock),
}

impl Clock for RulesClock {
    #[inline]
    fn now_ms(&self) -> u64 {
        match self {
            RulesClock::System(clock) => clock.now_ms(),
            RulesClock::Manual(clock) => clock.now_ms(),
        }
    }
}

/// How a rules file is made into rules beyond its text: one store in place
/// of every backend it names, and the clock.
#[derive(Clone, Debug)]
pub(crate) struct Making {
    pub(crate) backend: Option<AnyBackend>,
    pub(crate) clock: RulesClock,
}

/// What makes a throttle's counters what they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) rate: Rate,
    pub(crate) strategy: String,
    pub(crate) kind: StrategyKind,
    pub(crate) backend: String,
    pub(crate) namespace: String,
    pub(crate) shadow: String,
}

/// A throttle built from the file: plain or with a penalty.
#[derive(Clone)]
pub(crate) enum Built {
    Plain(Throttle<AnyBackend, RulesClock>),
    Penalized(Lockout<AnyBackend, RulesClock>),
}

/// A throttle from the file, with the cost its rules charge by default.
struct Made {
    built: Built,
    cost: u64,
    summary: Summary,
}

/// Reports a mistake at a place in the text.
pub(crate) struct Places<'a> {
    pub(crate) origin: &'a str,
    pub(crate) text: &'a str,
}

impl Places<'_> {
    /// An error at byte offset `span.start`.
    pub(crate) fn error(&self, span: Range<usize>, message: impl Into<String>) -> RulesError {
        let (line, column) = line_column(self.text, span.start);
        RulesError::at(self.origin, line, column, message.into())
    }
}

/// The 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.chars().count(), |at| {
        before[at + 1..].chars().count()
    }) + 1;
    (line, column)
}

/// A parser's message with every long word cut short and the whole
/// bounded: it may quote the file, and the file may be anything.
fn bounded(message: &str) -> String {
    let mut out = String::new();
    for (i, word) in message.split(' ').enumerate() {
        if out.len() > 300 {
            out.push_str(" …");
            break;
        }
        if i > 0 {
            out.push(' ');
        }
        if word.chars().count() > 64 {
            out.extend(word.chars().take(64));
            out.push('…');
        } else {
            out.push_str(word);
        }
    }
    out
}

/// A name or value from the file (or an operator's), cut short for an
/// error message.
pub(crate) fn shown(text: &str) -> String {
    format!("{:?}", traffik_core::backend::key_prefix(text))
}

/// The names a table defines, for "expected one of".
fn names<T>(table: &BTreeMap<String, T>) -> String {
    if table.is_empty() {
        return "none".to_owned();
    }
    let listed: Vec<String> = table.keys().take(20).map(|name| shown(name)).collect();
    listed.join(", ")
}

/// The version of the rules file's format that this traffik reads.
const FORMAT_VERSION: u32 = 1;

/// Parses and checks a rules file. `backends` holds the stores made by
/// earlier loads, by URL: a store already made is reused, so its
/// in-memory counters live on across reloads.
pub(crate) async fn compile(
    places: &Places<'_>,
    backends: &mut HashMap<String, AnyBackend>,
    making: &Making,
) -> Result<Compiled, RulesError> {
    let file: RulesFile = toml::from_str(places.text).map_err(|error| {
        let span = error.span().unwrap_or(0..0);
        // Not kept as the cause: its text quotes the file, unbounded.
        places.error(span, bounded(error.message().trim()))
    })?;
    if let Some(version) = &file.version {
        if *version.get() != FORMAT_VERSION {
            return Err(places.error(
                version.span(),
                format!(
                    "this traffik reads version {FORMAT_VERSION} of the rules file, not version {}",
                    version.get()
                ),
            ));
        }
    }
    // Stores, by name.
    let mut stores: BTreeMap<String, (AnyBackend, String)> = BTreeMap::new();
    let declared = if file.backends.is_empty() {
        vec![("memory".to_owned(), None)]
    } else {
        file.backends
            .iter()
            .map(|(name, url)| (name.clone(), Some(url)))
            .collect()
    };
    for (name, url) in declared {
        let (text, span) = match url {
            Some(url) => (url.get().clone(), url.span()),
            None => ("memory://".to_owned(), 0..0),
        };
        let backend = match (&making.backend, backends.get(&text)) {
            (Some(backend), _) | (None, Some(backend)) => backend.clone(),
            (None, None) => {
                let made = AnyBackend::from_url(&text).await.map_err(|error| {
                    places
                        .error(
                            span.clone(),
                            format!("backend {}: {}", shown(&name), error.message()),
                        )
                        .caused_by(error)
                })?;
                backends.insert(text.clone(), made.clone());
                made
            }
        };
        stores.insert(name, (backend, text));
    }
    let mut throttles: BTreeMap<String, Made> = BTreeMap::new();
    for (name, spec) in &file.throttles {
        throttles.insert(
            name.clone(),
            throttle(places, name, spec, &stores, &making.clock)?,
        );
    }
    let default_identity = identity(places, &file.identity, &file.exempt)?;
    let mut identities: BTreeMap<String, ConfigIdentity> = BTreeMap::new();
    for (name, spec) in &file.identities {
        identities.insert(name.clone(), identity(places, spec, &file.exempt)?);
    }
    // Consecutive rules of one identity share a layer.
    let mut runs: Vec<(Option<String>, Vec<Rule>)> = Vec::new();
    let mut uses: BTreeMap<String, Vec<Use>> = BTreeMap::new();
    for spec in &file.rules {
        let identity_name = match &spec.identity {
            Some(name) if !identities.contains_key(name.get()) => {
                return Err(places.error(
                    name.span(),
                    format!(
                        "no identity named {} in [identities]; it defines {}",
                        shown(name.get()),
                        names(&identities)
                    ),
                ));
            }
            Some(name) => Some(name.get().clone()),
            None => None,
        };
        let (rule, tiers) = rule(places, spec, &throttles)?;
        uses.entry(spec.throttle.get().clone())
            .or_default()
            .push(Use {
                scope: spec.scope,
                identity: match &identity_name {
                    Some(name) => identities[name].clone(),
                    None => default_identity.clone(),
                },
                tiers,
            });
        match runs.last_mut() {
            Some((last, rules)) if *last == identity_name => rules.push(rule),
            _ => runs.push((identity_name, vec![rule])),
        }
    }
    let failure_status = match &file.layer.failure_status {
        Some(status) => Some(
            StatusCode::from_u16(*status.get())
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .ok_or_else(|| {
                    places.error(status.span(), "failure_status must be a 4xx or 5xx status")
                })?,
        ),
        None => None,
    };
    let layers = runs
        .into_iter()
        .map(|(identity_name, rules)| {
            let extractor = match identity_name {
                Some(name) => identities[&name].clone(),
                None => default_identity.clone(),
            };
            let mut builder = ThrottleLayer::builder(extractor);
            if file.layer.order == OrderSpec::AsWritten {
                builder = builder.keep_order();
            }
            if let Some(status) = failure_status {
                builder = builder.failure_status(status);
            }
            rules
                .into_iter()
                .fold(builder, |builder, rule| builder.rule(rule))
                .build()
        })
        .collect();
    let admin = throttles
        .iter()
        .map(|(name, made)| {
            let uses = uses.remove(name).unwrap_or_default();
            let admin = ThrottleAdmin::new(name, made.built.clone(), uses, &default_identity);
            (name.clone(), admin)
        })
        .collect();
    Ok(Compiled {
        layers,
        throttles: throttles
            .into_iter()
            .map(|(name, made)| (name, made.summary))
            .collect(),
        admin,
    })
}

/// The strategy a throttle names, with its burst.
fn strategy(places: &Places<'_>, spec: &ThrottleSpec) -> Result<AnyStrategy, RulesError> {
    let kind = spec
        .strategy
        .as_ref()
        .map_or(StrategyKind::Gcra, |name| name.get().0);
    let Some(burst) = &spec.burst else {
        return Ok(AnyStrategy::from(kind));
    };
    let Some(value) = std::num::NonZeroU64::new(*burst.get()) else {
        return Err(places.error(burst.span(), "burst must be at least 1"));
    };
    Ok(match kind {
        StrategyKind::TokenBucket => TokenBucket::with_burst(value).into(),
        StrategyKind::LeakyBucket => LeakyBucket::with_burst(value).into(),
        StrategyKind::Gcra => Gcra::with_burst(value).into(),
        other => {
            return Err(places.error(
                burst.span(),
                format!(
                    "burst applies to token_bucket, leaky_bucket and gcra, not {}",
                    other.as_str()
                ),
            ));
        }
    })
}

/// Whether a strategy's state is measured in its rate's units (the three
/// meters), so that it cannot be carried over to another rate.
pub(crate) fn state_is_in_rate_units(kind: StrategyKind) -> bool {
    matches!(
        kind,
        StrategyKind::TokenBucket | StrategyKind::LeakyBucket | StrategyKind::Gcra
    )
}

fn throttle(
    places: &Places<'_>,
    name: &str,
    spec: &ThrottleSpec,
    stores: &BTreeMap<String, (AnyBackend, String)>,
    clock: &RulesClock,
) -> Result<Made, RulesError> {
    let strategy = strategy(places, spec)?;
    let rate = spec.rate.get().0;
    let (backend, url) = match &spec.backend {
        Some(wanted) => stores.get(wanted.get()).ok_or_else(|| {
            places.error(
                wanted.span(),
                format!(
                    "no backend named {} in [backends]; it defines {}",
                    shown(wanted.get()),
                    names(stores)
                ),
            )
        })?,
        None if stores.len() == 1 => stores
            .values()
            .next()
            .ok_or_else(|| places.error(spec.rate.span(), "no backend is defined"))?,
        None => {
            return Err(places.error(
                spec.rate.span(),
                format!(
                    "throttle {} names no backend, and [backends] defines several: {}",
                    shown(name),
                    names(stores)
                ),
            ));
        }
    };
    let namespace = spec
        .namespace
        .as_ref()
        .map_or(traffik_core::DEFAULT_NAMESPACE, |ns| ns.get().as_str());
    // A meter's state is in its rate's units: its keys carry the rate, so
    // another rate starts from fresh keys rather than misread old ones.
    let keyed_namespace = if state_is_in_rate_units(strategy.kind()) {
        format!("{namespace}~{rate}")
    } else {
        namespace.to_owned()
    };
    let enforcement = match &spec.shadow {
        None => Enforcement::Enforce,
        Some(shadow) => match shadow.enforced_percent() {
            p if p >= 100.0 => Enforcement::Enforce,
            p if p <= 0.0 => Enforcement::Shadow,
            p => Enforcement::percent(p),
        },
    };
    let policy = match (spec.failure_policy, &spec.fallback_instances) {
        (FailurePolicySpec::Fallback, instances) => {
            let instances = match instances {
                None => std::num::NonZeroU32::MIN,
                Some(n) => std::num::NonZeroU32::new(*n.get()).ok_or_else(|| {
                    places.error(n.span(), "fallback_instances must be at least 1")
                })?,
            };
            FailurePolicy::Fallback { instances }
        }
        (_, Some(n)) => {
            return Err(places.error(
                n.span(),
                "fallback_instances applies to failure_policy = \"fallback\" only",
            ));
        }
        (FailurePolicySpec::Allow, None) => FailurePolicy::Allow,
        (FailurePolicySpec::Deny, None) => FailurePolicy::Deny,
        (FailurePolicySpec::Error, None) => FailurePolicy::Error,
    };
    let built = Throttle::builder(name, rate)
        .strategy(strategy.clone())
        .namespace(keyed_namespace)
        .failure_policy(policy)
        .enforcement(enforcement)
        .clock(clock.clone())
        .build(backend.clone())
        .map_err(|error| {
            places.error(
                spec.rate.span(),
                format!("throttle {}: {error}", shown(name)),
            )
        })?;
    let built = match &spec.penalty {
        None => Built::Plain(built),
        Some(penalty) => {
            let steps = penalty.steps.get().iter().map(|step| step.0);
            let mut made = Penalty::escalating(steps)
                .map_err(|error| places.error(penalty.steps.span(), error.to_string()))?;
            if let Some(quiet) = &penalty.forgive_after {
                made = made
                    .forgive_after(quiet.get().0)
                    .map_err(|error| places.error(quiet.span(), error.to_string()))?;
            }
            Built::Penalized(
                built
                    .penalized(made)
                    .map_err(|error| places.error(penalty.steps.span(), error.to_string()))?,
            )
        }
    };
    let summary = Summary {
        rate,
        strategy: strategy.to_string(),
        kind: strategy.kind(),
        backend: url.clone(),
        namespace: namespace.to_owned(),
        shadow: format!("{enforcement:?}"),
    };
    Ok(Made {
        built,
        cost: spec.cost.as_ref().map_or(1, |cost| *cost.get()),
        summary,
    })
}

fn identity(
    places: &Places<'_>,
    spec: &IdentitySpec,
    exempt: &super::spec::ExemptSpec,
) -> Result<ConfigIdentity, RulesError> {
    let prefix = spec.ipv6_prefix.as_ref().map_or(64, |p| *p.get());
    if prefix > 128 {
        let span = spec.ipv6_prefix.as_ref().map_or(0..0, At::span);
        return Err(places.error(span, "ipv6_prefix must be from 0 to 128"));
    }
    let source_name = spec.source.as_ref().map_or("peer", |s| s.get().as_str());
    let source_span = spec.source.as_ref().map_or(0..0, At::span);
    let proxy = match source_name {
        "peer" => None,
        "header" => None,
        "x-forwarded-for" => Some(IpSource::XForwardedFor),
        "forwarded" => Some(IpSource::Forwarded),
        "x-real-ip" => Some(IpSource::XRealIp),
        "cf-connecting-ip" => Some(IpSource::CfConnectingIp),
        "true-client-ip" => Some(IpSource::TrueClientIp),
        "fly-client-ip" => Some(IpSource::FlyClientIp),
        "cloudfront-viewer-address" => Some(IpSource::CloudFrontViewerAddress),
        other => {
            return Err(places.error(
                source_span,
                format!(
                    "unknown identity source {}: expected peer, header, x-forwarded-for, \
                     forwarded, x-real-ip, cf-connecting-ip, true-client-ip, fly-client-ip or \
                     cloudfront-viewer-address",
                    shown(other)
                ),
            ));
        }
    };
    if proxy.is_none() {
        if let Some(trusted) = &spec.trusted_proxies {
            return Err(places.error(
                trusted.span(),
                format!("trusted_proxies applies to a proxy header, not to source {source_name:?}"),
            ));
        }
    }
    if source_name != "header" {
        if let Some(header) = &spec.header {
            return Err(places.error(header.span(), "header applies to source = \"header\" only"));
        }
    }
    let source = match (source_name, proxy) {
        ("header", _) => {
            let header = spec.header.as_ref().ok_or_else(|| {
                places.error(
                    source_span.clone(),
                    "source = \"header\" needs header = \"<name>\"",
                )
            })?;
            let key = HeaderKey::parse(header.get())
                .map_err(|error| places.error(header.span(), error.message().to_owned()))?;
            Source::Header(key.or(PeerIp::new().ipv6_prefix(prefix)))
        }
        (_, Some(ip_source)) => {
            let trusted = spec.trusted_proxies.as_ref().ok_or_else(|| {
                places.error(
                    source_span.clone(),
                    format!(
                        "source {source_name:?} needs trusted_proxies: the networks of the \
                         proxies that set it"
                    ),
                )
            })?;
            let client = ClientIp::trusting(ip_source, trusted.get().iter().map(String::as_str))
                .map_err(|error| places.error(trusted.span(), error.message().to_owned()))?;
            Source::Client(client.ipv6_prefix(prefix))
        }
        _ => Source::Peer(PeerIp::new().ipv6_prefix(prefix)),
    };
    let exempt_networks = exempt
        .cidrs
        .get()
        .iter()
        .map(|text| {
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    places.error(
                        exempt.cidrs.span(),
                        format!(
                            "{} is not a network such as 10.0.0.0/8 or an address",
                            shown(text)
                        ),
                    )
                })
        })
        .collect::<Result<Vec<IpNet>, RulesError>>()?;
    let exempt_headers = exempt
        .headers
        .iter()
        .map(|(name, value)| {
            let header = HeaderName::try_from(name.as_str()).map_err(|_| {
                places.error(
                    value.span(),
                    format!("{} is not a header name", shown(name)),
                )
            })?;
            let value = HeaderValue::try_from(value.get().as_str()).map_err(|_| {
                places.error(
                    value.span(),
                    format!("not a valid value for the header {header}"),
                )
            })?;
            Ok((header, value))
        })
        .collect::<Result<Vec<_>, RulesError>>()?;
    Ok(ConfigIdentity {
        source,
        exempt_networks,
        exempt_headers,
    })
}

/// The status range a count names.
fn statuses(places: &Places<'_>, spec: &CountSpec) -> Result<Counting, RulesError> {
    let mut ranges = Vec::new();
    for status in spec.statuses.get() {
        let range = match status {
            StatusSpec::Code(code) if (100..=999).contains(code) => *code..=*code,
            StatusSpec::Class(class)
                if class.len() == 3
                    && class.as_bytes()[0].is_ascii_digit()
                    && class[1..].eq_ignore_ascii_case("xx")
                    && class.as_bytes()[0] >= b'1' =>
            {
                let hundreds = u16::from(class.as_bytes()[0] - b'0') * 100;
                hundreds..=hundreds + 99
            }
            other => {
                return Err(places.error(
                    spec.statuses.span(),
                    format!("{other:?} is not a status such as 401 or a class such as \"5xx\""),
                ));
            }
        };
        ranges.push(range);
    }
    let mut ranges = ranges.into_iter();
    let Some(first) = ranges.next() else {
        return Err(places.error(spec.statuses.span(), "statuses needs at least one status"));
    };
    let counting = ranges.fold(Counting::status_range(first), Counting::or_status_range);
    Ok(match spec.settle {
        SettleSpec::Reserve => counting,
        SettleSpec::CheckThenCharge => counting.check_then_charge(),
    })
}

/// A rule, and its limits by identity (API tiers) if it has any.
fn rule(
    places: &Places<'_>,
    spec: &RuleSpec,
    throttles: &BTreeMap<String, Made>,
) -> Result<(Rule, Option<Tiers>), RulesError> {
    let name = spec.throttle.get();
    let made = throttles.get(name).ok_or_else(|| {
        places.error(
            spec.throttle.span(),
            format!(
                "no throttle named {} in [throttles]; it defines {}",
                shown(name),
                names(throttles)
            ),
        )
    })?;
    let (mut rule, limit_of) = match made.built.clone() {
        Built::Plain(throttle) => {
            let limit = throttle.limit().clone();
            (Rule::new(throttle), limit)
        }
        Built::Penalized(lockout) => {
            let limit = lockout.throttle().limit().clone();
            (Rule::penalized(lockout), limit)
        }
    };
    rule = rule.scope(match spec.scope {
        ScopeSpec::Route => KeyScope::Route,
        ScopeSpec::MethodRoute => KeyScope::MethodRoute,
        ScopeSpec::Global => KeyScope::Global,
    });
    let mut filter = Filter::new();
    if let Some(methods) = &spec.methods {
        let parsed = methods
            .get()
            .iter()
            .map(|method| {
                Method::from_bytes(method.to_ascii_uppercase().as_bytes()).map_err(|_| {
                    places.error(
                        methods.span(),
                        format!("{} is not an HTTP method", shown(method)),
                    )
                })
            })
            .collect::<Result<Vec<Method>, RulesError>>()?;
        filter = filter.methods(parsed);
    }
    if let Some(paths) = &spec.paths {
        filter = filter
            .paths(paths.get())
            .map_err(|error| places.error(paths.span(), error.to_string()))?;
    }
    for (header, value) in &spec.headers {
        filter = if value.get() == "*" {
            filter.header_present(header)
        } else {
            filter.header_is(header, value.get())
        }
        .map_err(|error| places.error(value.span(), error.to_string()))?;
    }
    rule = rule.filter(filter);
    let cost = spec.cost.as_ref().map_or(made.cost, |cost| *cost.get());
    if cost != 1 {
        rule = rule.cost_by(move |_| async move { cost });
    }
    if let Some(count) = &spec.count {
        rule = rule.count(statuses(places, count)?);
    }
    let mut tiers = None;
    if !spec.limits.is_empty() {
        let mut limits: HashMap<Arc<str>, Limit> = HashMap::new();
        for (identity, rate) in &spec.limits {
            let parsed: Rate = rate.get().parse().map_err(|error| {
                places.error(
                    rate.span(),
                    format!("{} is not a rate: {error}", shown(rate.get())),
                )
            })?;
            let limit = Limit::new(parsed, limit_of.strategy().clone())
                .map_err(|error| places.error(rate.span(), error.to_string()))?;
            limits.insert(identity.as_str().into(), limit);
        }
        let limits = Arc::new(limits);
        tiers = Some(Arc::clone(&limits));
        rule = rule.limit_by(move |identity| {
            let found = match identity.text() {
                Some(text) => limits.get(text).cloned(),
                None => limits.get(identity.to_string().as_str()).cloned(),
            };
            async move { found }
        });
    }
    Ok((rule, tiers))
}
