variable "name_prefix" {
  description = "Prefix of every resource name."
  type        = string
  default     = "mrcache"
}

variable "region_name" {
  description = "mrcache region name (MRCACHE_REGION), e.g. \"us-east\"; must be in platform.regions of the config file."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,31}$", var.region_name))
    error_message = "region_name must match [a-z][a-z0-9-]{1,31} (mrcache's region naming rule)."
  }
}

variable "aws_region" {
  description = "AWS region of this instance (the provider passed as aws must point at it)."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR of the region's VPC; must not overlap with the other regions (they are peered)."
  type        = string
}

variable "single_nat_gateway" {
  description = "One NAT gateway for both private subnets (cheaper) instead of one per AZ."
  type        = bool
  default     = true
}

variable "allowed_cidrs" {
  description = "CIDRs allowed to reach the load balancer."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "certificate_arn" {
  description = "ACM certificate (in this region) for the HTTPS listener; empty serves plain HTTP."
  type        = string
  default     = ""
}

variable "eviction" {
  description = "Redis eviction: \"lru\" or \"lfu\", set as maxmemory-policy volatile-<eviction>."
  type        = string
  default     = "lfu"

  validation {
    condition     = contains(["lru", "lfu"], var.eviction)
    error_message = "eviction must be \"lru\" or \"lfu\" (mrcache needs volatile-*)."
  }
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.medium"
}

variable "redis_engine_version" {
  description = "ElastiCache Redis engine version."
  type        = string
  default     = "7.1"
}

variable "redis_parameter_family" {
  description = "Parameter group family matching redis_engine_version."
  type        = string
  default     = "redis7"
}

variable "redis_nodes" {
  description = "Nodes of the replication group (primary + replicas); 2 or more enables automatic failover."
  type        = number
  default     = 2
}

variable "redis_auth_token" {
  description = "Redis AUTH token (16-128 printable characters, no @, \" or /)."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.redis_auth_token) >= 16 && length(var.redis_auth_token) <= 128
    error_message = "redis_auth_token must have 16 to 128 characters."
  }
}

variable "redis_allowed_cidrs" {
  description = "Extra CIDRs allowed to reach Redis (the reconciler's region, over VPC peering)."
  type        = list(string)
  default     = []
}

variable "peer_routes" {
  description = "Routes from the private subnets to peered regions: destination CIDR => VPC peering connection id."
  type        = map(string)
  default     = {}
}

variable "image" {
  description = "Container image with the mrcache package (entry points mrcache-regional-cache, mrcache-relay, mrcache-reconciler, mrcache-meter) and the config file at config_path."
  type        = string
}

variable "config_path" {
  description = "Path of the platform config file (TOML) inside the image (MRCACHE_CONFIG)."
  type        = string
  default     = "/etc/mrcache/mrcache.toml"
}

variable "region_urls" {
  description = "Every region's regional_cache URL, by mrcache region name (MRCACHE_REGION_URLS)."
  type        = map(string)
}

variable "allow_open" {
  description = "Let regional_cache listen on 0.0.0.0 without API keys in the config file (MRCACHE_ALLOW_OPEN)."
  type        = bool
  default     = false
}

variable "internal_token" {
  description = "Shared token for region-to-region requests (MRCACHE_INTERNAL_TOKEN); required when API keys are configured. Empty: not set."
  type        = string
  default     = ""
  sensitive   = true
}

variable "cache_count" {
  description = "Number of regional_cache tasks."
  type        = number
  default     = 2
}

variable "cache_cpu" {
  description = "CPU units of one regional_cache task."
  type        = number
  default     = 1024
}

variable "cache_memory" {
  description = "Memory (MiB) of one regional_cache task."
  type        = number
  default     = 2048
}

variable "cache_port" {
  description = "Port regional_cache listens on (MRCACHE_PORT)."
  type        = number
  default     = 8100
}

variable "relay_count" {
  description = "Number of invalidation_relay tasks (members of the consumer group mrcache-relay-<region>)."
  type        = number
  default     = 2
}

variable "relay_cpu" {
  description = "CPU units of one relay task."
  type        = number
  default     = 512
}

variable "relay_memory" {
  description = "Memory (MiB) of one relay task."
  type        = number
  default     = 1024
}

variable "relay_port" {
  description = "Port of the relay's health, readiness and metrics endpoints (MRCACHE_PORT)."
  type        = number
  default     = 9100
}

variable "kafka_bootstrap" {
  description = "Kafka bootstrap servers (host:port,...), reachable from this region."
  type        = string
}

variable "kafka_sasl_mechanism" {
  description = "SASL mechanism of the broker."
  type        = string
  default     = "SCRAM-SHA-512"

  validation {
    condition     = contains(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], var.kafka_sasl_mechanism)
    error_message = "kafka_sasl_mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."
  }
}

variable "kafka_sasl_username" {
  description = "SASL user name."
  type        = string
}

variable "kafka_sasl_password" {
  description = "SASL password."
  type        = string
  sensitive   = true
}

variable "run_reconciler" {
  description = "Run the reconciler in this region (exactly one region of the platform)."
  type        = bool
  default     = false
}

variable "reconciler_region_redis" {
  description = "Every region's Redis URL by mrcache region name (MRCACHE_REGION_REDIS); used when run_reconciler."
  type        = map(string)
  default     = {}
}

variable "run_meter" {
  description = "Run the consistency meter in this region (at most one region of the platform)."
  type        = bool
  default     = false
}

variable "meter_api_key" {
  description = "API key (read scope) the meter presents to the regions (MRCACHE_API_KEY); empty: none."
  type        = string
  default     = ""
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
  default     = {}
}
