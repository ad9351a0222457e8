# Tasks take no inbound connections. Outbound: HTTPS (Azure DevOps through your NAT
# gateway or proxy, AWS APIs or VPC endpoints) and NFS to the EFS security group.
# DNS (the VPC resolver) and the ECS metadata and credential endpoints are link-local
# and need no rule.

resource "aws_security_group" "task" {
  name_prefix = "${var.name}-task-"
  description = "${var.name} agent tasks: no ingress, egress HTTPS and NFS to EFS"
  vpc_id      = var.vpc_id

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_egress_rule" "task_https" {
  for_each = toset(var.https_egress_cidrs)

  security_group_id = aws_security_group.task.id
  description       = "HTTPS to Azure DevOps and AWS APIs"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  #tfsec:ignore:aws-ec2-no-public-egress-sgr Azure DevOps (dev.azure.com) publishes no fixed CIDR list; narrow https_egress_cidrs to your proxy if you have one
  cidr_ipv4 = each.value
}

resource "aws_security_group" "efs" {
  count = local.efs ? 1 : 0

  name_prefix = "${var.name}-efs-"
  description = "${var.name} EFS mount targets: NFS from the agent tasks only"
  vpc_id      = var.vpc_id

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "efs_from_task" {
  count = local.efs ? 1 : 0

  security_group_id            = aws_security_group.efs[0].id
  description                  = "NFS from the agent tasks"
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
  referenced_security_group_id = aws_security_group.task.id
}

resource "aws_vpc_security_group_egress_rule" "task_nfs" {
  count = local.efs ? 1 : 0

  security_group_id            = aws_security_group.task.id
  description                  = "NFS to the EFS mount targets"
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
  referenced_security_group_id = aws_security_group.efs[0].id
}

# ---------------------------------------------------------------------------
# Optional VPC endpoints: keep image pulls, logs and the secret off the NAT gateway.
# Azure DevOps itself still needs a NAT gateway or a proxy.

locals {
  interface_endpoints = var.create_vpc_endpoints ? toset(["ecr.api", "ecr.dkr", "logs", "secretsmanager"]) : toset([])
}

resource "aws_security_group" "endpoints" {
  count = var.create_vpc_endpoints ? 1 : 0

  name_prefix = "${var.name}-endpoints-"
  description = "${var.name} VPC endpoints: HTTPS from the agent tasks only"
  vpc_id      = var.vpc_id

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_from_task" {
  count = var.create_vpc_endpoints ? 1 : 0

  security_group_id            = aws_security_group.endpoints[0].id
  description                  = "HTTPS from the agent tasks"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.task.id
}

resource "aws_vpc_endpoint" "interface" {
  for_each = local.interface_endpoints

  vpc_id              = var.vpc_id
  service_name        = "com.amazonaws.${var.region}.${each.value}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = var.subnet_ids
  security_group_ids  = [aws_security_group.endpoints[0].id]
  private_dns_enabled = true

  tags = {
    Name = "${var.name}-${each.value}"
  }
}

# ECR keeps image layers in S3: without this gateway endpoint, layer downloads
# still go through the NAT gateway.
resource "aws_vpc_endpoint" "s3" {
  count = var.create_vpc_endpoints && length(var.vpc_endpoint_route_table_ids) > 0 ? 1 : 0

  vpc_id            = var.vpc_id
  service_name      = "com.amazonaws.${var.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = var.vpc_endpoint_route_table_ids

  tags = {
    Name = "${var.name}-s3"
  }
}
