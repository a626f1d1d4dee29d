//! The route table: every endpoint the API serves, in one constant that both the
//! router and the OpenAPI consistency test read, so the document cannot drift from
//! what is served.

use axum::routing::{get, post, MethodRouter};
use axum::Router;

use super::error::{no_route, wrong_method};
use super::{campaign, inject, status, ApiState};

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (`/health`).
    Public,
    /// Any tenant's token; objects of other tenants are invisible (404).
    Tenant,
    /// An admin tenant's token (others get 403).
    Admin,
}

/// What serves a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /health`.
    Health,
    /// Inject one KumoMTA-shaped request.
    Inject,
    /// Stream a campaign (NDJSON).
    Campaign,
    /// A message's status.
    MessageStatus,
    /// A campaign's status and ingest progress.
    CampaignStatus,
    /// Hold a campaign.
    CampaignSuspend,
    /// Release a campaign.
    CampaignResume,
    /// Drop a campaign's queued recipients.
    CampaignPurge,
    /// The queue listing.
    Queue,
    /// Hold a domain.
    DomainSuspend,
    /// Release a domain.
    DomainResume,
    /// Drop a domain's queued recipients.
    DomainPurge,
}

/// One served route.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The path, with `{param}` segments (axum's and OpenAPI's syntax alike).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Its handler.
    pub endpoint: Endpoint,
}

const fn route(
    method: &'static str,
    path: &'static str,
    access: Access,
    endpoint: Endpoint,
) -> Route {
    Route {
        method,
        path,
        access,
        endpoint,
    }
}

/// Every route served.
pub const ROUTES: &[Route] = &[
    route("GET", "/health", Access::Public, Endpoint::Health),
    route("POST", "/api/v1/messages", Access::Tenant, Endpoint::Inject),
    // KumoMTA's path: existing injectors switch by changing the host.
    route("POST", "/api/inject/v1", Access::Tenant, Endpoint::Inject),
    route(
        "GET",
        "/api/v1/messages/{id}",
        Access::Tenant,
        Endpoint::MessageStatus,
    ),
    route(
        "POST",
        "/api/v1/campaigns",
        Access::Tenant,
        Endpoint::Campaign,
    ),
    route(
        "GET",
        "/api/v1/campaigns/{id}",
        Access::Tenant,
        Endpoint::CampaignStatus,
    ),
    route(
        "POST",
        "/api/v1/campaigns/{id}/suspend",
        Access::Tenant,
        Endpoint::CampaignSuspend,
    ),
    route(
        "POST",
        "/api/v1/campaigns/{id}/resume",
        Access::Tenant,
        Endpoint::CampaignResume,
    ),
    route(
        "POST",
        "/api/v1/campaigns/{id}/purge",
        Access::Tenant,
        Endpoint::CampaignPurge,
    ),
    route("GET", "/api/v1/queue", Access::Admin, Endpoint::Queue),
    route(
        "POST",
        "/api/v1/domains/{domain}/suspend",
        Access::Admin,
        Endpoint::DomainSuspend,
    ),
    route(
        "POST",
        "/api/v1/domains/{domain}/resume",
        Access::Admin,
        Endpoint::DomainResume,
    ),
    route(
        "POST",
        "/api/v1/domains/{domain}/purge",
        Access::Admin,
        Endpoint::DomainPurge,
    ),
];

/// The handler of an endpoint, bound to its method.
fn method_router(r: &Route) -> MethodRouter<ApiState> {
    let on = |m: MethodRouter<ApiState>| m;
    match (r.method, r.endpoint) {
        ("GET", Endpoint::Health) => on(get(status::health)),
        ("POST", Endpoint::Inject) => on(post(inject::inject)),
        ("POST", Endpoint::Campaign) => on(post(campaign::stream_campaign)),
        ("GET", Endpoint::MessageStatus) => on(get(status::message_status)),
        ("GET", Endpoint::CampaignStatus) => on(get(status::campaign_status)),
        ("POST", Endpoint::CampaignSuspend) => on(post(status::campaign_suspend)),
        ("POST", Endpoint::CampaignResume) => on(post(status::campaign_resume)),
        ("POST", Endpoint::CampaignPurge) => on(post(status::campaign_purge)),
        ("GET", Endpoint::Queue) => on(get(status::queue)),
        ("POST", Endpoint::DomainSuspend) => on(post(status::domain_suspend)),
        ("POST", Endpoint::DomainResume) => on(post(status::domain_resume)),
        ("POST", Endpoint::DomainPurge) => on(post(status::domain_purge)),
        // A table entry whose method does not fit its handler: a programming
        // error the route-table test catches; serve it as "wrong method".
        _ => on(MethodRouter::new()),
    }
}

/// The router over [`ROUTES`], with JSON answers for unknown routes and methods.
pub fn build(state: ApiState) -> Router {
    let mut router = Router::new();
    for r in ROUTES {
        router = router.route(r.path, method_router(r));
    }
    router
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(state)
}
