/** Test doubles for code that uses @novacron/provider-aws: a stateful fake of the EC2 and S3 calls it makes. */
export { FakeEc2, FakeS3, ec2Error, type Bucket, type FakeEc2Options } from './fakeEc2.js';
