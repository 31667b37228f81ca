"""Generated from proto/capgate/v1 by scripts/gen_proto.sh. DO NOT EDIT."""
