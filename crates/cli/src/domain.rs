//! `fleetreg domain …`: the domains services are published under (seed
//! service-registry-push-sync.md, `register-domain NAME "description"`); a
//! thin client of `/api/v1/domains`.

use crate::client::{path_segment, Client};
use crate::cluster_sync::{col, Common};
use crate::edge_common::{if_match, items, print_deleted};
use crate::output::{print, print_one, Column, Format};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

const ALL_EXAMPLES: &str = "Examples:
  fleetreg domain register curiios.com \"Personal site\"
  fleetreg domain register vinaysachdeva.com \"Professional site\" --region us
  fleetreg domain list
  fleetreg domain show curiios.com -o json
  fleetreg domain update curiios.com --description \"Personal site and blog\" --region eu
  fleetreg domain delete vinaysachdeva.com

Services are published as SUBDOMAIN.DOMAIN under the domains their routing
names (`fleetreg routing --help`). A domain's region tag is what `geo` routing
matches against node regions. A domain still routed is not deleted
(RESOURCE_IN_USE names the services).";

const REGISTER_EXAMPLES: &str = "Examples:
  fleetreg domain register curiios.com \"Personal site\"
  fleetreg domain register vinaysachdeva.com \"Professional site\" --region us -o json";

const UPDATE_EXAMPLES: &str = "Examples:
  fleetreg domain update curiios.com --description \"Personal site and blog\"
  fleetreg domain update curiios.com --region eu
  fleetreg domain update curiios.com --no-region

Reads the domain, changes the fields given and writes it back if nobody changed
it in between (If-Match); otherwise PRECONDITION_FAILED, and nothing changes.";

/// The domain commands.
#[derive(Subcommand, Debug)]
#[command(after_help = ALL_EXAMPLES)]
pub enum DomainCommand {
    /// Register a domain with a description.
    #[command(after_help = REGISTER_EXAMPLES)]
    Register(RegisterArgs),
    /// List the registered domains.
    List(Common),
    /// Show one domain.
    Show(NameArgs),
    /// Change a domain's description or region.
    #[command(after_help = UPDATE_EXAMPLES)]
    Update(UpdateArgs),
    /// Delete a domain no routing names.
    Delete(NameArgs),
}

/// `domain register`.
#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// The domain, e.g. curiios.com.
    name: String,
    /// What it is for, e.g. "Personal site".
    #[arg(default_value = "")]
    description: String,
    /// Region tag for `geo` routing (matched against node regions), e.g. eu.
    #[arg(long)]
    region: Option<String>,
    #[command(flatten)]
    common: Common,
}

/// Commands that name one domain.
#[derive(Args, Debug)]
pub struct NameArgs {
    /// The domain, e.g. curiios.com.
    name: String,
    #[command(flatten)]
    common: Common,
}

/// `domain update`.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// The domain, e.g. curiios.com.
    name: String,
    /// New description.
    #[arg(long)]
    description: Option<String>,
    /// New region tag.
    #[arg(long, conflicts_with = "no_region")]
    region: Option<String>,
    /// Remove the region tag.
    #[arg(long)]
    no_region: bool,
    #[command(flatten)]
    common: Common,
}

impl UpdateArgs {
    /// The PUT body: the domain `current` with the flags given applied, or
    /// `None` when no flag changes anything.
    fn body(&self, current: &Value) -> Option<Value> {
        if self.description.is_none() && self.region.is_none() && !self.no_region {
            return None;
        }
        let description = self
            .description
            .clone()
            .map_or_else(|| current["description"].clone(), Value::from);
        let region = match (&self.region, self.no_region) {
            (Some(region), _) => json!(region),
            (None, true) => Value::Null,
            (None, false) => current["region"].clone(),
        };
        Some(json!({"description": description, "region": region}))
    }
}

/// `domain list` columns.
const COLUMNS: &[Column] = &[
    col("NAME", "/name"),
    col("DESCRIPTION", "/description"),
    col("REGION", "/region"),
    col("REVISION", "/revision"),
    col("UPDATED", "/updated_at"),
];

/// One domain, field per line.
const DETAIL: &[Column] = &[
    col("Name", "/name"),
    col("Description", "/description"),
    col("Region", "/region"),
    col("Revision", "/revision"),
    col("Registered", "/created_at"),
    col("Updated", "/updated_at"),
    col("ID", "/id"),
];

/// Every field of a domain, named as in the API, for CSV.
const CSV: &[Column] = &[
    col("id", "/id"),
    col("name", "/name"),
    col("description", "/description"),
    col("region", "/region"),
    col("revision", "/revision"),
    col("created_at", "/created_at"),
    col("updated_at", "/updated_at"),
];

fn path(name: &str) -> String {
    format!("/api/v1/domains/{}", path_segment(name))
}

fn print_domain(format: Format, domain: &Value) -> anyhow::Result<()> {
    match format {
        Format::Csv => print(format, domain, std::slice::from_ref(domain), CSV),
        format => print_one(format, domain, DETAIL),
    }
}

/// Runs a domain command.
pub async fn run(command: DomainCommand) -> anyhow::Result<()> {
    match command {
        DomainCommand::Register(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let body = json!({
                "name": args.name,
                "description": args.description,
                "region": args.region,
            });
            let domain: Value = client
                .send(client.request(Method::POST, "/api/v1/domains").json(&body))
                .await?;
            print_domain(args.common.format, &domain)
        }
        DomainCommand::List(common) => {
            let client = Client::from_args(&common.connect)?;
            let answer: Value = client
                .send(client.request(Method::GET, "/api/v1/domains"))
                .await?;
            let rows = items(&answer);
            match common.format {
                Format::Table if rows.is_empty() => {
                    eprintln!("no domains registered (`fleetreg domain register --help`)");
                    Ok(())
                }
                Format::Csv => print(Format::Csv, &answer, &rows, CSV),
                format => print(format, &answer, &rows, COLUMNS),
            }
        }
        DomainCommand::Show(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let domain: Value = client
                .send(client.request(Method::GET, &path(&args.name)))
                .await?;
            print_domain(args.common.format, &domain)
        }
        DomainCommand::Update(args) => {
            let client = Client::from_args(&args.common.connect)?;
            let current: Value = client
                .send(client.request(Method::GET, &path(&args.name)))
                .await?;
            let Some(body) = args.body(&current) else {
                anyhow::bail!(
                    "nothing to update: give --description, --region or --no-region (see `fleetreg domain update --help`)"
                );
            };
            let mut request = client.request(Method::PUT, &path(&args.name)).json(&body);
            if let Some(etag) = if_match(&current) {
                request = request.header("If-Match", etag);
            }
            let domain: Value = client.send(request).await?;
            print_domain(args.common.format, &domain)
        }
        DomainCommand::Delete(args) => {
            let client = Client::from_args(&args.common.connect)?;
            client
                .send_raw(client.request(Method::DELETE, &path(&args.name)))
                .await?;
            print_deleted(args.common.format, "domain", &args.name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: DomainCommand,
    }

    fn update(args: &[&str]) -> UpdateArgs {
        let argv = [&["domain", "update", "curiios.com"], args].concat();
        match Cli::parse_from(argv).command {
            DomainCommand::Update(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn updates_keep_what_is_not_given() {
        let current = json!({"description": "Personal site", "region": "eu", "revision": 3});
        assert_eq!(update(&[]).body(&current), None);
        assert_eq!(
            update(&["--description", "Blog"]).body(&current),
            Some(json!({"description": "Blog", "region": "eu"}))
        );
        assert_eq!(
            update(&["--no-region"]).body(&current),
            Some(json!({"description": "Personal site", "region": null}))
        );
        assert_eq!(
            update(&["--region", "us"]).body(&current),
            Some(json!({"description": "Personal site", "region": "us"}))
        );
    }
}
