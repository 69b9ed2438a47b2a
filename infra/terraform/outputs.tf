output "endpoint" {
  description = "The platform's latency-routed URL."
  value       = "${var.regions[0].certificate_arn == "" ? "http" : "https"}://${var.hostname}"
}

output "region_urls" {
  description = "Each region's own URL (MRCACHE_REGION_URLS)."
  value       = local.region_urls
}

output "alb_dns_names" {
  description = "Load balancer DNS name by region."
  value       = { for name, alb in local.albs : name => alb.dns }
}

output "redis_endpoints" {
  description = "ElastiCache primary endpoint by region."
  value = {
    (var.regions[0].name) = module.region_1.redis_endpoint
    (var.regions[1].name) = module.region_2.redis_endpoint
    (var.regions[2].name) = module.region_3.redis_endpoint
  }
}

output "service_names" {
  description = "ECS cluster and service names by region."
  value = {
    (var.regions[0].name) = { cluster = module.region_1.ecs_cluster_name, services = module.region_1.service_names }
    (var.regions[1].name) = { cluster = module.region_2.ecs_cluster_name, services = module.region_2.service_names }
    (var.regions[2].name) = { cluster = module.region_3.ecs_cluster_name, services = module.region_3.service_names }
  }
}

output "reconciler_region" {
  description = "The region running the reconciler and the consistency meter."
  value       = var.regions[0].name
}

output "kafka_bootstrap" {
  description = "Kafka bootstrap servers the services use."
  value       = local.kafka_bootstrap
}
