#!/usr/bin/env bash
# Fetches a pinned Apache Kafka broker (KRaft mode, no ZooKeeper) from Maven Central
# into .tools/kafka/libs, for the Kafka sink's integration tests
# (capgate.local.kafka_broker runs it with `java -cp '.tools/kafka/libs/*' kafka.Kafka`).
#
# Maven resolves org.apache.kafka:kafka_2.13 and its runtime dependencies, checking
# each file against Central's checksum (--strict-checksums); the resulting jar set is
# then checked against KAFKA_LIBS_SHA256, a digest of every jar's name and SHA-256, so
# a changed transitive dependency fails loudly instead of running silently.
#
# Idempotent: does nothing when .tools/kafka/libs already holds this version.
# Needs: java 17+ (to run the broker) and mvn. Maven's local repository is the default
# (~/.m2/repository) unless MAVEN_REPO_LOCAL is set.
set -euo pipefail
cd "$(dirname "$0")/.."

KAFKA_VERSION="4.3.1"
SCALA_VERSION="2.13"
LOG4J_VERSION="2.25.4"  # the log4j-core that kafka_2.13 (KAFKA_VERSION) depends on
DEPENDENCY_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
# sha256 of `sha256sum *.jar` (sorted by name) in .tools/kafka/libs for KAFKA_VERSION.
KAFKA_LIBS_SHA256="6953bfc4d23c24004ed3d44b741c7a4538a923f476f85ff7cf086e87ead4b49c"

DEST=".tools/kafka"
STAMP="$DEST/libs/.kafka-${SCALA_VERSION}-${KAFKA_VERSION}-${KAFKA_LIBS_SHA256:0:12}"
[ -f "$STAMP" ] && exit 0

for tool in java mvn; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "kafka.sh: $tool is required (Debian: apt-get install openjdk-17-jre-headless maven)" >&2
    exit 1
  fi
done

echo "kafka.sh: fetching Apache Kafka ${KAFKA_VERSION} (kafka_${SCALA_VERSION}) from Maven Central" >&2
mkdir -p "$DEST"
work="$(mktemp -d "$DEST/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT

cat >"$work/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>capgate.tools</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_${SCALA_VERSION}</artifactId>
      <version>${KAFKA_VERSION}</version>
    </dependency>
    <!-- Kafka logs through SLF4J 1.7; this binds it to the log4j-core Kafka ships, so
         the broker's log lands where capgate.local.kafka_broker points it. -->
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>${LOG4J_VERSION}</version>
    </dependency>
  </dependencies>
</project>
EOF

mvn_args=(-q -B -Dstyle.color=never --strict-checksums -f "$work/pom.xml")
if [ -n "${MAVEN_REPO_LOCAL:-}" ]; then
  mvn_args+=("-Dmaven.repo.local=${MAVEN_REPO_LOCAL}")
fi
# Maven logs errors to stdout: keep its output, show it only on failure.
if ! mvn "${mvn_args[@]}" "${DEPENDENCY_PLUGIN}:copy-dependencies" \
  -DincludeScope=runtime -DoutputDirectory="$PWD/$work/libs" >"$work/mvn.log" 2>&1; then
  cat "$work/mvn.log" >&2
  echo "kafka.sh: mvn failed to fetch Kafka ${KAFKA_VERSION}" >&2
  exit 1
fi

digest="$(cd "$work/libs" && LC_ALL=C sha256sum -- *.jar | LC_ALL=C sort -k2 | sha256sum | cut -c1-64)"
if [ "$digest" != "$KAFKA_LIBS_SHA256" ]; then
  echo "kafka.sh: the jar set for Kafka ${KAFKA_VERSION} has digest $digest," >&2
  echo "kafka.sh: expected $KAFKA_LIBS_SHA256; refusing to install it" >&2
  exit 1
fi

rm -rf "$DEST/libs"
mv "$work/libs" "$DEST/libs"
touch "$STAMP"
echo "kafka.sh: Kafka ${KAFKA_VERSION} in $DEST/libs ($(du -sh "$DEST/libs" | cut -f1))" >&2
