#!/bin/sh
# One-shot (temporalio/admin-tools): the namespace and the enrollment search attributes. Safe to repeat.
set -eu
NAMESPACE="${TEMPORAL_NAMESPACE:-default}"

until temporal operator cluster health --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1; do
  echo "waiting for Temporal at $TEMPORAL_ADDRESS"
  sleep 2
done

temporal operator namespace describe --namespace "$NAMESPACE" --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1 \
  || temporal operator namespace create --namespace "$NAMESPACE" --retention 30d --address "$TEMPORAL_ADDRESS"

# Keep in step with workflows/search_attributes.py.
for attribute in EnrollmentStatus=Keyword EnrollmentProductId=Keyword EnrollmentUserId=Keyword EnrollmentNextPeriodAt=Datetime \
    EnrollmentHealth=Keyword; do
  name="${attribute%%=*}"
  type="${attribute#*=}"
  if temporal operator search-attribute list --namespace "$NAMESPACE" --address "$TEMPORAL_ADDRESS" | grep -qw "$name"; then
    echo "search attribute $name exists"
  else
    temporal operator search-attribute create --namespace "$NAMESPACE" --address "$TEMPORAL_ADDRESS" \
      --name "$name" --type "$type"
  fi
done
echo "namespace $NAMESPACE and the enrollment search attributes are registered"
