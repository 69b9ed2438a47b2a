# Managed Redis: one ElastiCache replication group (cluster mode disabled),
# TLS in transit, AUTH token, and the volatile-* eviction mrcache relies on:
# entries and tombstones carry TTLs, namespace metadata and the outbox do not,
# so only cache entries are evictable (README "Eviction").

resource "aws_elasticache_subnet_group" "this" {
  name       = local.name
  subnet_ids = aws_subnet.private[*].id
  tags       = local.tags
}

resource "aws_elasticache_parameter_group" "this" {
  name        = "${local.name}-${var.eviction}"
  family      = var.redis_parameter_family
  description = "mrcache ${var.region_name}: volatile-${var.eviction}"
  tags        = local.tags

  parameter {
    name  = "maxmemory-policy"
    value = "volatile-${var.eviction}"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id       = local.name
  description                = "mrcache ${var.region_name}"
  engine                     = "redis"
  engine_version             = var.redis_engine_version
  node_type                  = var.redis_node_type
  num_cache_clusters         = var.redis_nodes
  automatic_failover_enabled = var.redis_nodes > 1
  multi_az_enabled           = var.redis_nodes > 1
  port                       = 6379
  parameter_group_name       = aws_elasticache_parameter_group.this.name
  subnet_group_name          = aws_elasticache_subnet_group.this.name
  security_group_ids         = [aws_security_group.redis.id]
  at_rest_encryption_enabled = true
  transit_encryption_enabled = true
  auth_token                 = var.redis_auth_token
  apply_immediately          = true
  snapshot_retention_limit   = 1
  tags                       = local.tags
}

locals {
  redis_endpoint = aws_elasticache_replication_group.this.primary_endpoint_address
  redis_url      = "rediss://${local.redis_endpoint}:6379/0"
}
