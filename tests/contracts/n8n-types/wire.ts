/**
 * n8n's push types in the form they take on the wire, for tests/contracts/test_n8n_types.py.
 *
 * n8n declares its push messages (`PushMessage` of `@n8n/api-types`) and run data
 * (`IRunData` of `n8n-workflow`) as the objects its server holds; a client receives what
 * `JSON.stringify` makes of them. `Json<T>` is that JSON form, by `JSON.stringify`'s rules:
 * a value with a `toJSON` method becomes what the method returns (a `Date` becomes its ISO
 * string), methods are dropped, a property that may be `undefined` may be absent (and is
 * never `null` unless the type says so), everything else keeps its declared type. An error
 * class (`ExecutionError`) thus becomes its public data properties, which is what n8n sends.
 */
import type { PushMessage } from "@n8n/api-types";
import type { IRunData } from "n8n-workflow";

type Method = (...args: never[]) => unknown;
type IsAny<T> = 0 extends 1 & T ? true : false;

export type Json<T> =
  IsAny<T> extends true
    ? T
    : unknown extends T
      ? unknown
      : T extends string | number | boolean | null
        ? T
        : T extends { toJSON: (...args: never[]) => infer R }
          ? Json<R>
          : T extends Method
            ? never
            : T extends readonly unknown[]
              ? { [K in keyof T]: Json<T[K]> }
              : T extends object
                ? JsonObject<T>
                : never;

/** The properties that are not methods; those that may be `undefined` become optional. */
type JsonObject<T> = {
  [K in keyof T as NonNullable<T[K]> extends Method
    ? never
    : undefined extends T[K]
      ? never
      : K]: Json<T[K]>;
} & {
  [K in keyof T as NonNullable<T[K]> extends Method
    ? never
    : undefined extends T[K]
      ? K
      : never]?: Json<Exclude<T[K], undefined>>;
};

/** Each push message type by its `type`, as n8n's own `PushPayload` picks it out. */
export type Push = { [T in PushMessage["type"]]: Json<Extract<PushMessage, { type: T }>> };

export type RunData = Json<IRunData>;
