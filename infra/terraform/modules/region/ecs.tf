# Container services: regional_cache (N tasks behind the ALB), the
# invalidation_relay, and, in one region of the platform, the reconciler and
# the consistency meter. Environment variables are exactly the settings the
# services read (prefix MRCACHE_, nested __; see services/*/settings.py).

locals {
  # what every service of the region reads (libs/common/service.py ServiceSettings)
  common_environment = {
    MRCACHE_REGION                    = var.region_name
    MRCACHE_CONFIG                    = var.config_path
    MRCACHE_HOST                      = "0.0.0.0"
    MRCACHE_REDIS__URL                = local.redis_url
    MRCACHE_KAFKA__BOOTSTRAP          = var.kafka_bootstrap
    MRCACHE_KAFKA__SECURITY_PROTOCOL  = "SASL_SSL"
    MRCACHE_KAFKA__SASL_MECHANISM     = var.kafka_sasl_mechanism
    MRCACHE_KAFKA__SASL_USERNAME      = var.kafka_sasl_username
    MRCACHE_KAFKA__ENABLE_IDEMPOTENCE = "true"
    MRCACHE_LOG_FORMAT                = "json"
  }
  common_secrets = {
    MRCACHE_REDIS__PASSWORD      = aws_secretsmanager_secret.redis_password.arn
    MRCACHE_KAFKA__SASL_PASSWORD = aws_secretsmanager_secret.kafka_sasl_password.arn
  }

  # each service: the common settings plus its own (plain objects, so that
  # tests/unit/test_terraform.py can check every name against the settings classes)
  cache_extra_environment = {
    MRCACHE_PORT        = tostring(var.cache_port)
    MRCACHE_REGION_URLS = jsonencode(var.region_urls)
    MRCACHE_ALLOW_OPEN  = tostring(var.allow_open)
  }
  cache_extra_secrets = {
    MRCACHE_INTERNAL_TOKEN = one(aws_secretsmanager_secret.internal_token[*].arn)
  }

  relay_extra_environment = {
    MRCACHE_PORT = tostring(var.relay_port)
  }
  relay_extra_secrets = {}

  reconciler_extra_environment = {
    MRCACHE_PORT         = "9200"
    MRCACHE_REGION_REDIS = jsonencode(var.reconciler_region_redis)
  }
  reconciler_extra_secrets = {}

  meter_extra_environment = {
    MRCACHE_PORT        = "9300"
    MRCACHE_REGION_URLS = jsonencode(var.region_urls)
  }
  meter_extra_secrets = {
    MRCACHE_API_KEY = one(aws_secretsmanager_secret.meter_api_key[*].arn)
    # the meter's probe is a region-to-region route
    MRCACHE_INTERNAL_TOKEN = one(aws_secretsmanager_secret.internal_token[*].arn)
  }

  # optional secrets that are not set are left out
  cache_environment      = merge(local.common_environment, local.cache_extra_environment)
  cache_secrets          = merge(local.common_secrets, { for k, v in local.cache_extra_secrets : k => v if v != null })
  relay_environment      = merge(local.common_environment, local.relay_extra_environment)
  relay_secrets          = merge(local.common_secrets, local.relay_extra_secrets)
  reconciler_environment = merge(local.common_environment, local.reconciler_extra_environment)
  reconciler_secrets     = merge(local.common_secrets, local.reconciler_extra_secrets)
  meter_environment      = merge(local.common_environment, local.meter_extra_environment)
  meter_secrets          = merge(local.common_secrets, { for k, v in local.meter_extra_secrets : k => v if v != null })

  # name => task shape; the reconciler and the meter only where asked
  services = merge(
    {
      regional-cache = {
        command     = ["mrcache-regional-cache"]
        port        = var.cache_port
        cpu         = var.cache_cpu
        memory      = var.cache_memory
        count       = var.cache_count
        environment = local.cache_environment
        secrets     = local.cache_secrets
      }
      relay = {
        command     = ["mrcache-relay"]
        port        = var.relay_port
        cpu         = var.relay_cpu
        memory      = var.relay_memory
        count       = var.relay_count
        environment = local.relay_environment
        secrets     = local.relay_secrets
      }
    },
    var.run_reconciler ? {
      reconciler = {
        command     = ["mrcache-reconciler"]
        port        = 9200
        cpu         = 512
        memory      = 1024
        count       = 1
        environment = local.reconciler_environment
        secrets     = local.reconciler_secrets
      }
    } : {},
    var.run_meter ? {
      meter = {
        command     = ["mrcache-meter"]
        port        = 9300
        cpu         = 512
        memory      = 1024
        count       = 1
        environment = local.meter_environment
        secrets     = local.meter_secrets
      }
    } : {},
  )
}

resource "aws_ecs_cluster" "this" {
  name = local.name
  tags = local.tags

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "service" {
  for_each          = local.services
  name              = "/mrcache/${var.region_name}/${each.key}"
  retention_in_days = var.log_retention_days
  tags              = local.tags
}

# -- IAM ------------------------------------------------------------------------

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# pulls the image, writes logs, reads the task's secrets
resource "aws_iam_role" "execution" {
  name_prefix        = "${var.name_prefix}-exec-"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "read_secrets" {
  statement {
    actions   = ["secretsmanager:GetSecretValue"]
    resources = local.secret_arns
  }
}

resource "aws_iam_role_policy" "read_secrets" {
  name   = "read-mrcache-secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.read_secrets.json
}

# the services themselves call no AWS API
resource "aws_iam_role" "task" {
  name_prefix        = "${var.name_prefix}-task-"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

# -- task definitions and services ----------------------------------------------

resource "aws_ecs_task_definition" "service" {
  for_each                 = local.services
  family                   = "${local.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = each.value.cpu
  memory                   = each.value.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  tags                     = local.tags

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([
    {
      name         = each.key
      image        = var.image
      command      = each.value.command
      essential    = true
      portMappings = [{ containerPort = each.value.port, protocol = "tcp" }]
      environment  = [for name, value in each.value.environment : { name = name, value = value }]
      secrets      = [for name, arn in each.value.secrets : { name = name, valueFrom = arn }]
      stopTimeout  = 30
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.service[each.key].name
          awslogs-region        = var.aws_region
          awslogs-stream-prefix = each.key
        }
      }
    }
  ])
}

resource "aws_ecs_service" "service" {
  for_each                           = local.services
  name                               = each.key
  cluster                            = aws_ecs_cluster.this.id
  task_definition                    = aws_ecs_task_definition.service[each.key].arn
  desired_count                      = each.value.count
  launch_type                        = "FARGATE"
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = each.key == "regional-cache" ? 60 : null
  propagate_tags                     = "SERVICE"
  tags                               = local.tags

  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  dynamic "load_balancer" {
    for_each = each.key == "regional-cache" ? [1] : []
    content {
      target_group_arn = aws_lb_target_group.cache.arn
      container_name   = each.key
      container_port   = var.cache_port
    }
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  depends_on = [aws_lb_listener.http, aws_iam_role_policy.read_secrets]
}
