output "alb_dns_name" {
  description = "DNS name of the region's load balancer."
  value       = aws_lb.this.dns_name
}

output "alb_zone_id" {
  description = "Route 53 zone id of the load balancer (for alias records)."
  value       = aws_lb.this.zone_id
}

output "alb_security_group_id" {
  description = "Security group of the load balancer."
  value       = aws_security_group.alb.id
}

output "redis_endpoint" {
  description = "Primary endpoint address of the region's Redis."
  value       = local.redis_endpoint
}

output "redis_url" {
  description = "rediss:// URL of the region's Redis (MRCACHE_REDIS__URL)."
  value       = local.redis_url
}

output "ecs_cluster_name" {
  description = "ECS cluster of the region."
  value       = aws_ecs_cluster.this.name
}

output "service_names" {
  description = "ECS service names by mrcache service."
  value       = { for key, service in aws_ecs_service.service : key => service.name }
}

output "cache_service_name" {
  description = "ECS service of regional_cache."
  value       = aws_ecs_service.service["regional-cache"].name
}

output "relay_service_name" {
  description = "ECS service of invalidation_relay."
  value       = aws_ecs_service.service["relay"].name
}

output "log_group_names" {
  description = "CloudWatch log groups by mrcache service."
  value       = { for key, group in aws_cloudwatch_log_group.service : key => group.name }
}

output "vpc_id" {
  description = "The region's VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr" {
  description = "CIDR of the region's VPC."
  value       = aws_vpc.this.cidr_block
}

output "private_subnet_ids" {
  description = "Private subnets (tasks, Redis)."
  value       = aws_subnet.private[*].id
}

output "task_security_group_id" {
  description = "Security group of the region's tasks."
  value       = aws_security_group.tasks.id
}

output "nat_public_ips" {
  description = "Public addresses the region's tasks leave from (other regions allow them on their ALBs)."
  value       = aws_eip.nat[*].public_ip
}
