# Optional MSK cluster in the first region (create_msk = true): SASL/SCRAM
# over TLS on port 9096, reachable from the other regions over VPC peering.

resource "aws_kms_key" "msk" {
  provider                = aws.region_1
  count                   = var.create_msk ? 1 : 0
  description             = "mrcache MSK SCRAM secrets"
  deletion_window_in_days = 7
  enable_key_rotation     = true
}

# MSK requires the AmazonMSK_ prefix and a customer-managed key
resource "aws_secretsmanager_secret" "msk_scram" {
  provider    = aws.region_1
  count       = var.create_msk ? 1 : 0
  name_prefix = "AmazonMSK_${var.name_prefix}-"
  kms_key_id  = aws_kms_key.msk[0].key_id
}

resource "aws_secretsmanager_secret_version" "msk_scram" {
  provider  = aws.region_1
  count     = var.create_msk ? 1 : 0
  secret_id = aws_secretsmanager_secret.msk_scram[0].id
  secret_string = jsonencode({
    username = var.kafka_sasl_username
    password = var.kafka_sasl_password
  })
}

resource "aws_security_group" "msk" {
  provider    = aws.region_1
  count       = var.create_msk ? 1 : 0
  name        = "${var.name_prefix}-msk"
  description = "mrcache MSK brokers"
  vpc_id      = module.region_1.vpc_id

  ingress {
    description = "SASL/SCRAM over TLS from every region"
    from_port   = 9096
    to_port     = 9096
    protocol    = "tcp"
    cidr_blocks = [for r in var.regions : r.vpc_cidr]
  }
}

resource "aws_msk_configuration" "this" {
  provider       = aws.region_1
  count          = var.create_msk ? 1 : 0
  name           = "${var.name_prefix}-msk"
  kafka_versions = [var.msk_kafka_version]

  # two brokers: replication 2; min.insync.replicas 1 keeps writes going with
  # one broker down (acks=all still waits for every in-sync replica)
  server_properties = <<-EOT
    auto.create.topics.enable=true
    default.replication.factor=2
    min.insync.replicas=1
    num.partitions=12
  EOT
}

resource "aws_msk_cluster" "this" {
  provider               = aws.region_1
  count                  = var.create_msk ? 1 : 0
  cluster_name           = "${var.name_prefix}-events"
  kafka_version          = var.msk_kafka_version
  number_of_broker_nodes = 2

  broker_node_group_info {
    instance_type   = var.msk_instance_type
    client_subnets  = module.region_1.private_subnet_ids
    security_groups = [aws_security_group.msk[0].id]
    storage_info {
      ebs_storage_info {
        volume_size = 100
      }
    }
  }

  client_authentication {
    sasl {
      scram = true
    }
  }

  encryption_info {
    encryption_in_transit {
      client_broker = "TLS"
      in_cluster    = true
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this[0].arn
    revision = aws_msk_configuration.this[0].latest_revision
  }
}

resource "aws_msk_scram_secret_association" "this" {
  provider        = aws.region_1
  count           = var.create_msk ? 1 : 0
  cluster_arn     = aws_msk_cluster.this[0].arn
  secret_arn_list = [aws_secretsmanager_secret.msk_scram[0].arn]

  depends_on = [aws_secretsmanager_secret_version.msk_scram]
}
