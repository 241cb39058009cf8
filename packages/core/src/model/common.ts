import { z } from 'zod';

/** Names that end up in VM names, tags and labels: lowercase DNS labels. */
export const NAME = /^[a-z]([a-z0-9-]*[a-z0-9])?$/;

export function name(what: string, maxLength: number) {
  return z
    .string()
    .max(maxLength, `${what} names are at most ${maxLength} characters`)
    .regex(NAME, `${what} names use lowercase letters, digits and '-', start with a letter and do not end with '-'`);
}

/**
 * Label keys and values. Keys are lowercase and may use `.` and `/` (Kubernetes-style
 * prefixes such as `team.example.com/owner`); values may carry uppercase. EC2 tags and
 * libvirt metadata hold them as written; GCE labels cannot, so the GCP provider keeps the
 * exact labels in instance metadata and sets sanitised GCE labels beside them.
 */
export const labelKey = z
  .string()
  .regex(/^[a-z][a-z0-9_./-]{0,62}$/, 'label keys use lowercase letters, digits, _ . / -, start with a letter, at most 63 characters');
export const labelValue = z
  .string()
  .regex(/^[a-z0-9_./-]{0,63}$/i, 'label values use letters, digits, _ . / -, at most 63 characters');
export const labels = z.record(labelKey, labelValue);
export type Labels = z.infer<typeof labels>;

export const overcommit = z.strictObject({
  cpu: z.number().min(0.1).max(64).default(1),
  memory: z.number().min(0.1).max(4).default(1),
  disk: z.number().min(0.1).max(16).default(1),
});
export type Overcommit = z.infer<typeof overcommit>;

export const pricePerHour = z.number().min(0).max(10_000);
