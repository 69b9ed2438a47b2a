# mrcache on AWS: one module instance per region (network, ElastiCache Redis,
# ECS Fargate services behind an ALB), VPC peering from the first region to the
# others (the reconciler reads every region's Redis), Kafka (bring your own, or
# MSK in the first region), and latency-based DNS across the regions.

provider "aws" {
  alias  = "region_1"
  region = var.regions[0].aws_region
  default_tags {
    tags = var.tags
  }
}

provider "aws" {
  alias  = "region_2"
  region = var.regions[1].aws_region
  default_tags {
    tags = var.tags
  }
}

provider "aws" {
  alias  = "region_3"
  region = var.regions[2].aws_region
  default_tags {
    tags = var.tags
  }
}

locals {
  region_names = [for r in var.regions : r.name]
  # each region's own URL (forwarding to home regions, remote fills, the meter)
  region_urls = {
    for r in var.regions :
    r.name => "${r.certificate_arn == "" ? "http" : "https"}://${r.name}.${var.hostname}"
  }
  region_redis = {
    (var.regions[0].name) = module.region_1.redis_url
    (var.regions[1].name) = module.region_2.redis_url
    (var.regions[2].name) = module.region_3.redis_url
  }
  kafka_bootstrap = var.create_msk ? aws_msk_cluster.this[0].bootstrap_brokers_sasl_scram : var.kafka_bootstrap
}

resource "terraform_data" "kafka_check" {
  lifecycle {
    precondition {
      condition     = var.create_msk || var.kafka_bootstrap != ""
      error_message = "Set kafka_bootstrap (bring-your-own Kafka) or create_msk = true."
    }
  }
}

module "region_1" {
  source    = "./modules/region"
  providers = { aws = aws.region_1 }

  name_prefix          = var.name_prefix
  region_name          = var.regions[0].name
  aws_region           = var.regions[0].aws_region
  vpc_cidr             = var.regions[0].vpc_cidr
  eviction             = var.regions[0].eviction
  cache_count          = var.regions[0].cache_count
  relay_count          = var.regions[0].relay_count
  certificate_arn      = var.regions[0].certificate_arn
  allowed_cidrs        = var.allowed_cidrs
  image                = var.image
  config_path          = var.config_path
  region_urls          = local.region_urls
  allow_open           = var.allow_open
  internal_token       = var.internal_token
  redis_node_type      = var.redis_node_type
  redis_nodes          = var.redis_nodes
  redis_auth_token     = var.redis_auth_token
  kafka_bootstrap      = local.kafka_bootstrap
  kafka_sasl_mechanism = var.kafka_sasl_mechanism
  kafka_sasl_username  = var.kafka_sasl_username
  kafka_sasl_password  = var.kafka_sasl_password
  log_retention_days   = var.log_retention_days
  tags                 = var.tags
  peer_routes = {
    (var.regions[1].vpc_cidr) = aws_vpc_peering_connection.region_2.id
    (var.regions[2].vpc_cidr) = aws_vpc_peering_connection.region_3.id
  }

  # the platform-wide services run here, and only here
  run_reconciler          = true
  reconciler_region_redis = local.region_redis
  run_meter               = true
  meter_api_key           = var.meter_api_key
}

module "region_2" {
  source    = "./modules/region"
  providers = { aws = aws.region_2 }

  name_prefix          = var.name_prefix
  region_name          = var.regions[1].name
  aws_region           = var.regions[1].aws_region
  vpc_cidr             = var.regions[1].vpc_cidr
  eviction             = var.regions[1].eviction
  cache_count          = var.regions[1].cache_count
  relay_count          = var.regions[1].relay_count
  certificate_arn      = var.regions[1].certificate_arn
  allowed_cidrs        = var.allowed_cidrs
  image                = var.image
  config_path          = var.config_path
  region_urls          = local.region_urls
  allow_open           = var.allow_open
  internal_token       = var.internal_token
  redis_node_type      = var.redis_node_type
  redis_nodes          = var.redis_nodes
  redis_auth_token     = var.redis_auth_token
  kafka_bootstrap      = local.kafka_bootstrap
  kafka_sasl_mechanism = var.kafka_sasl_mechanism
  kafka_sasl_username  = var.kafka_sasl_username
  kafka_sasl_password  = var.kafka_sasl_password
  log_retention_days   = var.log_retention_days
  tags                 = var.tags
  peer_routes = {
    (var.regions[0].vpc_cidr) = aws_vpc_peering_connection.region_2.id
  }
  redis_allowed_cidrs = [var.regions[0].vpc_cidr]

  run_reconciler = false
  run_meter      = false
}

module "region_3" {
  source    = "./modules/region"
  providers = { aws = aws.region_3 }

  name_prefix          = var.name_prefix
  region_name          = var.regions[2].name
  aws_region           = var.regions[2].aws_region
  vpc_cidr             = var.regions[2].vpc_cidr
  eviction             = var.regions[2].eviction
  cache_count          = var.regions[2].cache_count
  relay_count          = var.regions[2].relay_count
  certificate_arn      = var.regions[2].certificate_arn
  allowed_cidrs        = var.allowed_cidrs
  image                = var.image
  config_path          = var.config_path
  region_urls          = local.region_urls
  allow_open           = var.allow_open
  internal_token       = var.internal_token
  redis_node_type      = var.redis_node_type
  redis_nodes          = var.redis_nodes
  redis_auth_token     = var.redis_auth_token
  kafka_bootstrap      = local.kafka_bootstrap
  kafka_sasl_mechanism = var.kafka_sasl_mechanism
  kafka_sasl_username  = var.kafka_sasl_username
  kafka_sasl_password  = var.kafka_sasl_password
  log_retention_days   = var.log_retention_days
  tags                 = var.tags
  peer_routes = {
    (var.regions[0].vpc_cidr) = aws_vpc_peering_connection.region_3.id
  }
  redis_allowed_cidrs = [var.regions[0].vpc_cidr]

  run_reconciler = false
  run_meter      = false
}

# -- VPC peering: the first region (reconciler, MSK) to each other region -------

resource "aws_vpc_peering_connection" "region_2" {
  provider    = aws.region_1
  vpc_id      = module.region_1.vpc_id
  peer_vpc_id = module.region_2.vpc_id
  peer_region = var.regions[1].aws_region
  tags        = { Name = "${var.name_prefix}-${var.regions[0].name}-${var.regions[1].name}" }
}

resource "aws_vpc_peering_connection_accepter" "region_2" {
  provider                  = aws.region_2
  vpc_peering_connection_id = aws_vpc_peering_connection.region_2.id
  auto_accept               = true
  tags                      = { Name = "${var.name_prefix}-${var.regions[0].name}-${var.regions[1].name}" }
}

resource "aws_vpc_peering_connection" "region_3" {
  provider    = aws.region_1
  vpc_id      = module.region_1.vpc_id
  peer_vpc_id = module.region_3.vpc_id
  peer_region = var.regions[2].aws_region
  tags        = { Name = "${var.name_prefix}-${var.regions[0].name}-${var.regions[2].name}" }
}

resource "aws_vpc_peering_connection_accepter" "region_3" {
  provider                  = aws.region_3
  vpc_peering_connection_id = aws_vpc_peering_connection.region_3.id
  auto_accept               = true
  tags                      = { Name = "${var.name_prefix}-${var.regions[0].name}-${var.regions[2].name}" }
}

# -- each region's tasks reach the other regions' load balancers through NAT ------

resource "aws_security_group_rule" "alb_from_other_regions_1" {
  provider          = aws.region_1
  type              = "ingress"
  security_group_id = module.region_1.alb_security_group_id
  from_port         = var.regions[0].certificate_arn == "" ? 80 : 443
  to_port           = var.regions[0].certificate_arn == "" ? 80 : 443
  protocol          = "tcp"
  cidr_blocks       = formatlist("%s/32", concat(module.region_2.nat_public_ips, module.region_3.nat_public_ips))
  description       = "mrcache tasks of the other regions"
}

resource "aws_security_group_rule" "alb_from_other_regions_2" {
  provider          = aws.region_2
  type              = "ingress"
  security_group_id = module.region_2.alb_security_group_id
  from_port         = var.regions[1].certificate_arn == "" ? 80 : 443
  to_port           = var.regions[1].certificate_arn == "" ? 80 : 443
  protocol          = "tcp"
  cidr_blocks       = formatlist("%s/32", concat(module.region_1.nat_public_ips, module.region_3.nat_public_ips))
  description       = "mrcache tasks of the other regions"
}

resource "aws_security_group_rule" "alb_from_other_regions_3" {
  provider          = aws.region_3
  type              = "ingress"
  security_group_id = module.region_3.alb_security_group_id
  from_port         = var.regions[2].certificate_arn == "" ? 80 : 443
  to_port           = var.regions[2].certificate_arn == "" ? 80 : 443
  protocol          = "tcp"
  cidr_blocks       = formatlist("%s/32", concat(module.region_1.nat_public_ips, module.region_2.nat_public_ips))
  description       = "mrcache tasks of the other regions"
}

# -- DNS: one latency-routed hostname, plus one name per region --------------------

locals {
  albs = {
    (var.regions[0].name) = { aws_region = var.regions[0].aws_region, dns = module.region_1.alb_dns_name, zone = module.region_1.alb_zone_id }
    (var.regions[1].name) = { aws_region = var.regions[1].aws_region, dns = module.region_2.alb_dns_name, zone = module.region_2.alb_zone_id }
    (var.regions[2].name) = { aws_region = var.regions[2].aws_region, dns = module.region_3.alb_dns_name, zone = module.region_3.alb_zone_id }
  }
}

resource "aws_route53_record" "latency" {
  provider       = aws.region_1
  for_each       = local.albs
  zone_id        = var.route53_zone_id
  name           = var.hostname
  type           = "A"
  set_identifier = each.key

  latency_routing_policy {
    region = each.value.aws_region
  }

  alias {
    name                   = each.value.dns
    zone_id                = each.value.zone
    evaluate_target_health = true
  }
}

resource "aws_route53_record" "region" {
  provider = aws.region_1
  for_each = local.albs
  zone_id  = var.route53_zone_id
  name     = "${each.key}.${var.hostname}"
  type     = "A"

  alias {
    name                   = each.value.dns
    zone_id                = each.value.zone
    evaluate_target_health = true
  }
}
