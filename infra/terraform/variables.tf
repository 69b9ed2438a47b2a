variable "name_prefix" {
  description = "Prefix of every resource name."
  type        = string
  default     = "mrcache"
}

variable "regions" {
  description = <<-EOT
    The three regions, in order; the first runs the reconciler, the meter, the
    optional MSK cluster and the Route 53 records. name is the mrcache region
    name (MRCACHE_REGION, platform.regions of the config file), aws_region the
    AWS region of the provider alias region_<n>, vpc_cidr a /16 that overlaps
    no other region (they are peered).
  EOT
  type = list(object({
    name            = string
    aws_region      = string
    vpc_cidr        = string
    eviction        = optional(string, "lfu")
    cache_count     = optional(number, 2)
    relay_count     = optional(number, 2)
    certificate_arn = optional(string, "")
  }))
  default = [
    { name = "us-east", aws_region = "us-east-1", vpc_cidr = "10.10.0.0/16" },
    { name = "eu-west", aws_region = "eu-west-1", vpc_cidr = "10.20.0.0/16" },
    { name = "ap-south", aws_region = "ap-south-1", vpc_cidr = "10.30.0.0/16" },
  ]

  validation {
    condition     = length(var.regions) == 3
    error_message = "regions must list exactly three regions (one provider alias and module instance each)."
  }

  validation {
    condition     = length(distinct([for r in var.regions : r.name])) == length(var.regions) && length(distinct([for r in var.regions : r.aws_region])) == length(var.regions)
    error_message = "region names and AWS regions must be distinct."
  }

  validation {
    condition     = alltrue([for r in var.regions : contains(["lru", "lfu"], r.eviction)])
    error_message = "eviction must be \"lru\" or \"lfu\" (Redis volatile-lru / volatile-lfu)."
  }
}

variable "hostname" {
  description = "The platform's hostname (latency-routed to the nearest region); each region also gets <region name>.<hostname>."
  type        = string
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone that holds hostname."
  type        = string
}

variable "image" {
  description = "Container image with mrcache installed and the platform config file at config_path."
  type        = string
}

variable "config_path" {
  description = "Path of the platform config file (TOML) inside the image (MRCACHE_CONFIG)."
  type        = string
  default     = "/etc/mrcache/mrcache.toml"
}

variable "allowed_cidrs" {
  description = "CIDRs allowed to reach the load balancers (the other regions' NAT addresses are added)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "allow_open" {
  description = "Let regional_cache serve without API keys in the config file (MRCACHE_ALLOW_OPEN); only for private networks."
  type        = bool
  default     = false
}

variable "internal_token" {
  description = "Shared secret for region-to-region requests (MRCACHE_INTERNAL_TOKEN); required when the config file has API keys."
  type        = string
  default     = ""
  sensitive   = true
}

variable "meter_api_key" {
  description = "API key with read scope the consistency meter presents (MRCACHE_API_KEY); empty when the regions need none."
  type        = string
  default     = ""
  sensitive   = true
}

variable "redis_node_type" {
  description = "ElastiCache node type of every region."
  type        = string
  default     = "cache.t4g.medium"
}

variable "redis_nodes" {
  description = "Nodes per region's replication group (2 or more: automatic failover, Multi-AZ)."
  type        = number
  default     = 2
}

variable "redis_auth_token" {
  description = "Redis AUTH token of every region (the reconciler uses one password for all regions)."
  type        = string
  sensitive   = true
}

variable "kafka_bootstrap" {
  description = "Bring-your-own Kafka (MSK, Confluent Cloud, ...): bootstrap servers reachable from every region. Ignored when create_msk."
  type        = string
  default     = ""
}

variable "create_msk" {
  description = "Create an MSK cluster (SASL/SCRAM, TLS) in the first region instead of using kafka_bootstrap."
  type        = bool
  default     = false
}

variable "msk_instance_type" {
  description = "Broker instance type of the optional MSK cluster."
  type        = string
  default     = "kafka.m5.large"
}

variable "msk_kafka_version" {
  description = "Kafka version of the optional MSK cluster."
  type        = string
  default     = "3.6.0"
}

variable "kafka_sasl_mechanism" {
  description = "SASL mechanism (MSK uses SCRAM-SHA-512; Confluent Cloud PLAIN)."
  type        = string
  default     = "SCRAM-SHA-512"

  validation {
    condition     = contains(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], var.kafka_sasl_mechanism)
    error_message = "kafka_sasl_mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."
  }
}

variable "kafka_sasl_username" {
  description = "SASL user name (Confluent: the API key)."
  type        = string
  default     = "mrcache"
}

variable "kafka_sasl_password" {
  description = "SASL password (Confluent: the API secret)."
  type        = string
  sensitive   = true
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log groups."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
  default     = { "app" = "mrcache" }
}
