// Package dynamo keeps tarport's state in one DynamoDB table
// (TARPORT_TABLE): the discovery cache and the download jobs on AWS.
//
// The table has a string partition key "pk", a string sort key "sk" and a
// TTL on "expires_at" (Unix seconds). template.yaml declares exactly what
// Schema returns; a test holds the two together. DynamoDB's TTL deletes
// hours late, so every reader checks expiry itself.
package dynamo

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Attribute names of the table's keys and TTL.
const (
	AttrPK  = "pk"
	AttrSK  = "sk"
	AttrTTL = "expires_at"
)

// Schema is the table as template.yaml creates it (on demand), without
// a name; TTL is not part of CreateTable and is declared in the template.
func Schema() *dynamodb.CreateTableInput {
	return &dynamodb.CreateTableInput{
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(AttrPK), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(AttrSK), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(AttrPK), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(AttrSK), KeyType: types.KeyTypeRange},
		},
	}
}
